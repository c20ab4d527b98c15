package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/medical/sim"
)

// TestMedicalBillHubKilled SIGKILLs `citycard serve` while the insurer is
// settling a bill (the settlement booked at the insurer, its answer not
// yet back), then starts it again on the same store. The restarted hub
// finds the bill's saga open, asks the insurer for the settlement by its
// key, reverses it and declines the bill: the insurer holds nothing live,
// the card is as it was, the bill sent again gets the decline, and
// `citycard ledger verify` passes.
func TestMedicalBillHubKilled(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	ins := sim.New(sim.Options{Persons: sim.DefaultPersons()})
	url, stopIns, err := ins.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopIns)
	dir := t.TempDir()
	conf, _ := json.Marshal(map[string]any{"plugins": []map[string]any{{"name": "medical", "bundled": true, "channel": "medical",
		"config": map[string]any{"listen": "127.0.0.1:0", "insurer_url": url, "org_code": "H0001", "insurer_timeout_ms": 30000}}}})
	confFile := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildCitycard(t)
	dsn := "sqlite://" + filepath.Join(dir, "hub.db")
	const admin = "medical-kill-admin-token"
	srv := startServer(t, bin, dsn, admin, "--plugins", confFile, "--saga-stale-after", "1s")
	c := newClient(srv.url, admin)
	c.must(t, "POST", "/v1/merchants", 201, map[string]any{"id": "M-HOSP", "name": "Hospital", "mcc": "8062", "settlement_account": "1"}, nil)
	var card struct {
		Number string `json:"number"`
	}
	c.must(t, "POST", "/v1/cards", 201, map[string]any{"holder": map[string]any{"name": "Alice", "id_type": "passport", "id_number": "E1"}}, &card)
	c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{"amount": 5000, "currency": "CNY", "purse": "medical"}, nil)
	c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{"amount": 5000, "currency": "CNY"}, nil)

	his := func(c *client) *sim.HIS {
		var a struct {
			Replies []struct {
				Payload medical.State `json:"payload"`
			} `json:"replies"`
		}
		c.must(t, "POST", "/v1/plugins/medical/messages", 200, map[string]any{"type": medical.TypeStatus, "payload": map[string]any{}}, &a)
		h := sim.NewHIS(a.Replies[0].Payload.Listen)
		t.Cleanup(h.Close)
		return h
	}
	alice := sim.DefaultPersons()[0]
	b := sim.Bill{BillID: "K1", Hospital: "M-HOSP", Kind: "outpatient", Card: card.Number, Currency: "CNY",
		Patient: sim.Patient{IDNo: alice.IDNo, Name: alice.Name},
		Lines:   []sim.Line{sim.NewLine("A001", "Consultation", 6000, 1), sim.NewLine("B002", "Medicine", 2000, 2)}}.Totalled()

	// The insurer books the settlement and answers only much later.
	ins.TimeoutNext(1, time.Minute)
	go func() { _, _ = his(c).PostBill(context.Background(), b) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(ins.Settlements()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the insurer never received the settlement")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	if n := len(ins.LiveSettlements()); n != 1 {
		t.Fatalf("before the restart the insurer holds %d live settlements, want the 1 the killed hub left", n)
	}

	srv = startServer(t, bin, dsn, admin, "--plugins", confFile, "--saga-stale-after", "1s")
	c = newClient(srv.url, admin)
	deadline = time.Now().Add(60 * time.Second)
	for len(ins.LiveSettlements()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted hub did not reverse the settlement: %+v", ins.LiveSettlements())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var view struct {
		Balance int64 `json:"balance"`
	}
	c.must(t, "GET", "/v1/cards/"+card.Number, 200, nil, &view)
	if view.Balance != 10000 {
		t.Fatalf("the card holds %d after the interrupted bill, want 10000", view.Balance)
	}
	// The bill sent again is the decline the recovery recorded.
	deadline = time.Now().Add(30 * time.Second)
	for {
		a, err := his(c).PostBill(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Status, Reason string
		}
		if a.Problem() == nil && a.Decode(&r) == nil && r.Status == "declined" {
			if r.Reason != "interrupted" {
				t.Fatalf("bill after the restart: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bill after the restart: %d %s", a.Status, a.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(ins.LiveSettlements()); n != 0 {
		t.Fatalf("the insurer holds %d live settlements after the bill was sent again", n)
	}
	if out, code := runCitycard(t, bin, "ledger", "verify", "--live", "--db", dsn); code != 0 {
		t.Fatalf("ledger verify exited %d:\n%s", code, out)
	}
}
