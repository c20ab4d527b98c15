package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/plugins/utilities/sim"
)

// TestReferencePluginKilledUnderTraffic runs `citycard serve` with the
// bundled utilities plugin and its billers' simulator, streams bill
// payments through it and SIGKILLs the plugin process in the middle. The
// hub restarts it; every payment is answered, done or with a retryable
// error; resent with the same idempotency key, each completes. In the end
// each payment is in the ledger and at the biller exactly once, and
// `citycard ledger verify` passes.
func TestReferencePluginKilledUnderTraffic(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	biller := sim.New(sim.Options{})
	url, stopSim, err := biller.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSim)
	dir := t.TempDir()
	conf, _ := json.Marshal(map[string]any{"plugins": []map[string]any{{"name": "utilities", "bundled": true,
		"config": map[string]any{"biller_url": url, "billers": map[string]any{"telecom": map[string]string{"merchant": "M-TELECOM"}},
			"request_timeout_ms": 5000}}}})
	confFile := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildCitycard(t)
	dsn := "sqlite://" + filepath.Join(dir, "hub.db")
	const admin = "crash-test-admin-token"
	srv := startServer(t, bin, dsn, admin, "--plugins", confFile)
	c := newClient(srv.url, admin)
	c.must(t, "POST", "/v1/merchants", 201, map[string]any{"id": "M-TELECOM", "name": "City Telecom", "mcc": "4814", "settlement_account": "1"}, nil)
	var card struct {
		Number string `json:"number"`
	}
	c.must(t, "POST", "/v1/cards", 201, map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, &card)
	c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{"amount": 100000, "currency": "CNY"}, nil)

	// City Telecom takes instalments: each payment is 1.00 off one of 40
	// accounts' bills, three per account.
	const accounts, each, amount = 40, 3, 100
	type payment struct {
		key  string
		body map[string]any
	}
	var all []payment
	before := map[string]int64{}
	for a := range accounts {
		acct := fmt.Sprintf("300%05d", a)
		b, err := biller.Bill("telecom", acct)
		if err != nil {
			t.Fatal(err)
		}
		if b.Outstanding < each*amount {
			t.Fatalf("account %s owes only %d", acct, b.Outstanding)
		}
		before[acct] = b.Outstanding
		for i := range each {
			all = append(all, payment{key: fmt.Sprintf("pay-%s-%d", acct, i), body: map[string]any{"type": "utilities.bill.pay.v1",
				"payload": map[string]any{"biller": "telecom", "account": acct, "bill_id": b.ID, "card": card.Number,
					"amount": amount, "currency": "CNY"}}})
		}
	}
	send := func(p payment) (int, error) {
		return c.doKey("POST", "/v1/plugins/utilities/messages", p.key, p.body, nil)
	}

	var plugins struct {
		Plugins []struct {
			PID      int `json:"pid"`
			Restarts int `json:"restarts"`
		} `json:"plugins"`
	}
	c.must(t, "GET", "/v1/plugins", 200, nil, &plugins)
	pid := plugins.Plugins[0].PID

	var (
		mu          sync.Mutex
		retry       []payment
		done, other int
		wg          sync.WaitGroup
	)
	work := make(chan payment)
	for range 8 {
		wg.Go(func() {
			for p := range work {
				status, err := send(p)
				mu.Lock()
				switch {
				case err == nil && status == 200:
					done++
				case status == 503 || status == 504:
					retry = append(retry, p)
				default:
					other++
					t.Errorf("payment %s: status %d, %v", p.key, status, err)
				}
				mu.Unlock()
			}
		})
	}
	for i, p := range all {
		if i == len(all)/3 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		work <- p
	}
	close(work)
	wg.Wait()
	t.Logf("%d payments done through the kill, %d answered retryable", done, len(retry))
	for _, p := range retry {
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, err := send(p)
			if err == nil && status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("payment %s never completed: %d %v", p.key, status, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	c.must(t, "GET", "/v1/plugins", 200, nil, &plugins)
	if p := plugins.Plugins[0]; p.Restarts < 1 || p.PID == pid {
		t.Fatalf("the plugin was not restarted: %+v (killed pid %d)", p, pid)
	}
	var got struct {
		Balance int64 `json:"balance"`
	}
	c.must(t, "GET", "/v1/cards/"+card.Number, 200, nil, &got)
	if want := int64(100000 - len(all)*amount); got.Balance != want {
		t.Errorf("card balance %d after %d payments of %d, want %d", got.Balance, len(all), amount, want)
	}
	refs := map[string]int{}
	for _, p := range biller.Payments() {
		refs[p.Reference]++
	}
	if len(refs) != len(all) {
		t.Errorf("the biller booked %d distinct payments, want %d", len(refs), len(all))
	}
	for ref, n := range refs {
		if n != 1 {
			t.Errorf("the biller booked payment %s %d times", ref, n)
		}
	}
	for acct, owed := range before {
		b, _ := biller.Bill("telecom", acct)
		if b.Outstanding != owed-each*amount {
			t.Errorf("account %s owes %d, want %d", acct, b.Outstanding, owed-each*amount)
		}
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	if out, code := runCitycard(t, bin, "ledger", "verify", "--db", dsn); code != 0 {
		t.Fatalf("ledger verify exited %d:\n%s", code, out)
	}
}
