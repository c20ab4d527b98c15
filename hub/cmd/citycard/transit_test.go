package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/plugins/transit/sim"
)

// TestTransitFleet runs `citycard serve` with the bundled transit plugin
// and drives 200 simulated validators through it: online taps, a lost-card
// report, a radio outage that makes them decide offline and upload later,
// a rider going into debt offline and a top-up recovering it. Every tap is
// answered exactly once, each device's taps are all in the hub, the
// validators end with the hub's deny-list version and the right cards on
// it, and `citycard ledger verify` passes.
func TestTransitFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 200-validator fleet")
	}
	t.Cleanup(pin.SetCostForTesting(1, 8))
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, _ := json.Marshal(map[string]any{"plugins": []map[string]any{{"name": "transit", "bundled": true,
		"config": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", port), "denylist_refresh_ms": 1000}}}})
	confFile := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildCitycard(t)
	dsn := "sqlite://" + filepath.Join(dir, "hub.db")
	const admin = "fleet-test-admin-token"
	srv := startServer(t, bin, dsn, admin, "--plugins", confFile)
	c := newClient(srv.url, admin)
	for _, m := range []string{"M-CITYBUS", "M-METRO"} {
		c.must(t, "POST", "/v1/merchants", 201, map[string]any{"id": m, "name": m, "mcc": "4131", "settlement_account": "1"}, nil)
	}
	issue := func(amount int64) string {
		var card struct {
			Number string `json:"number"`
		}
		c.must(t, "POST", "/v1/cards", 201, map[string]any{"holder": map[string]any{"name": "Rider", "id_type": "passport", "id_number": "E1"}}, &card)
		if amount > 0 {
			c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{"amount": amount, "currency": "CNY"}, nil)
		}
		return card.Number
	}
	var riders []string
	for range 40 {
		riders = append(riders, issue(100000))
	}
	lost, poor := riders[0], issue(100)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fleet, err := sim.NewFleet(ctx, sim.FleetConfig{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Validators: 200, Prefix: "FLT",
		Cards: riders, TapEvery: 200 * time.Millisecond, UploadEvery: 500 * time.Millisecond, PollEvery: time.Second,
		Deadline: time.Second, Seed: 7,
		Keys: func(ctx context.Context, d sim.Device) ([]byte, error) {
			var out struct {
				Key string `json:"key"`
			}
			if _, err := c.do("POST", "/v1/transit/devices", d, &out); err != nil {
				return nil, err
			}
			return hex.DecodeString(out.Key)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()

	fleet.Run(ctx, 2*time.Second)
	// A rider reports a card lost: it goes on the deny list.
	c.must(t, "POST", "/v1/cards/"+lost+"/loss", 200, map[string]any{}, nil)
	fleet.Run(ctx, time.Second)
	// The radio goes: validators decide offline and keep their taps.
	fleet.SetLink(false)
	fleet.Run(ctx, time.Second)
	fleet.SetLink(true)
	fleet.Run(ctx, 2*time.Second)

	// The poor rider (1.00 on the card) rides twice offline: the first ride
	// risk takes the purse below zero and the card onto the deny list.
	v := fleet.Validators()[0]
	v.SetOffline(true)
	v.Tap(ctx, poor)
	v.Tap(ctx, poor)
	v.SetOffline(false)
	if err := fleet.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fleet.Check(); err != nil {
		t.Fatalf("taps not answered exactly once: %v", err)
	}
	counts := fleet.Counts()
	t.Logf("fleet: %+v", counts)
	if counts.OnlineAnswers == 0 || counts.OfflineDecisions == 0 || counts.UploadedTaps == 0 || counts.Charged == 0 {
		t.Fatalf("the fleet did not go through online and offline taps: %+v", counts)
	}
	var card struct {
		Balance int64 `json:"balance"`
	}
	c.must(t, "GET", "/v1/cards/"+poor, 200, nil, &card)
	if card.Balance >= 0 {
		t.Fatalf("the poor rider's balance after two offline rides: %d", card.Balance)
	}
	var deny struct {
		Version int64    `json:"version"`
		Cards   []string `json:"cards"`
	}
	c.must(t, "GET", "/v1/transit/denylist", 200, nil, &deny)
	if !contains(deny.Cards, lost) || !contains(deny.Cards, poor) {
		t.Fatalf("deny list %v lacks the lost card %s or the card in debt %s", deny.Cards, lost, poor)
	}
	// The top-up pays the debt first and takes the card off the list.
	c.must(t, "POST", "/v1/cards/"+poor+"/topups", 201, map[string]any{"amount": 1000, "currency": "CNY"}, nil)
	c.must(t, "GET", "/v1/transit/denylist", 200, nil, &deny)
	if contains(deny.Cards, poor) || !contains(deny.Cards, lost) {
		t.Fatalf("deny list after the top-up: %v", deny.Cards)
	}

	// Every validator comes to the hub's version (the plugin refreshes
	// every second) and refuses exactly the cards on the list.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := fleet.PollDenylist(ctx); err != nil {
			t.Fatal(err)
		}
		behind := 0
		for _, v := range fleet.Validators() {
			if ver, _ := v.DenylistVersion(); ver != deny.Version {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d validators are not at deny-list version %d", behind, deny.Version)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, v := range fleet.Validators() {
		if !v.Denied(lost) || v.Denied(poor) || v.Denied(riders[1]) {
			t.Fatalf("validator %s's list: lost %v, poor %v, rider %v", v.Device().ID, v.Denied(lost), v.Denied(poor), v.Denied(riders[1]))
		}
	}
	// Every tap a validator numbered is in the hub, once.
	for _, v := range fleet.Validators() {
		var page struct {
			Taps []struct {
				Seq int64 `json:"seq"`
			} `json:"taps"`
		}
		c.must(t, "GET", fmt.Sprintf("/v1/transit/devices/%s/taps?limit=1000", v.Device().ID), 200, nil, &page)
		if int64(len(page.Taps)) != v.Seq() {
			t.Fatalf("validator %s numbered %d taps, the hub holds %d", v.Device().ID, v.Seq(), len(page.Taps))
		}
		for i, tp := range page.Taps {
			if tp.Seq != int64(i+1) {
				t.Fatalf("validator %s: tap %d of the hub's is seq %d", v.Device().ID, i, tp.Seq)
			}
		}
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	if out, code := runCitycard(t, bin, "ledger", "verify", "--db", dsn); code != 0 {
		t.Fatalf("ledger verify exited %d:\n%s", code, out)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
