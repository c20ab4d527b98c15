package transit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/transit/tap"
)

func TestOnlineTap(t *testing.T) {
	f := start(t, nil)
	f.hub.deny([]string{carol}, nil)
	v := f.validator(t, "BUS-0001")
	ctx := ctxFor(t, 5*time.Second)

	d := v.Tap(ctx, alice)
	if !d.Online || !d.Allowed || d.Result.Status != sim.Charged || d.Result.Fare == nil || *d.Result.Fare != fare ||
		d.Result.Balance == nil || *d.Result.Balance != startingBalance-fare || d.Result.Seq != 1 || d.Result.Transfer == "" {
		t.Fatalf("decision = %+v", d)
	}
	// Not yet on the validator's own list, carol's card is declined by the hub.
	d = v.Tap(ctx, carol)
	if !d.Online || d.Allowed || d.Result.Status != sim.Declined || d.Result.Reason != "card_lost" {
		t.Fatalf("lost card: %+v", d)
	}
	// A validator with a key the hub did not issue is refused.
	forged, err := sim.NewValidator(sim.Config{Device: sim.Device{ID: "BUS-0001", Route: "1"}, Key: bytes.Repeat([]byte{7}, tap.KeySize), Client: f.client(t)})
	if err != nil {
		t.Fatal(err)
	}
	if d := forged.Tap(ctx, bob); !d.Online || d.Allowed || d.Result.Status != sim.Refused || d.Result.Reason != "tap_mac_invalid" {
		t.Fatalf("forged: %+v", d)
	}
	if n := f.hub.count("online"); n != 3 {
		t.Errorf("the hub got %d online messages, want 3", n)
	}
	if f.hub.balance(alice) != startingBalance-fare {
		t.Errorf("alice has %d", f.hub.balance(alice))
	}
}

func TestOnlineTapBadRequests(t *testing.T) {
	f := start(t, nil)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"not json", "POST", "/v1/taps", `{"device":`, 400, "invalid_json", ""},
		{"unknown field", "POST", "/v1/taps", `{"device":"B","seq":1,"card":"3100990000000013","at":"2026-11-26T08:00:00Z","kind":"on","route":"1","mac":"0000000000000000","price":1}`, 400, "unknown_field", "/price"},
		{"bad card", "POST", "/v1/taps", `{"device":"B","seq":1,"card":"31009900AB","at":"2026-11-26T08:00:00Z","kind":"on","route":"1","mac":"0000000000000000"}`, 400, "invalid_request", "/card"},
		{"seq not a number", "POST", "/v1/taps", `{"device":"B","seq":"one"}`, 400, "invalid_request", "/seq"},
		{"form feed in device", "POST", "/v1/taps", `{"device":"B\fX","seq":1,"card":"3100990000000013","at":"2026-11-26T08:00:00Z","kind":"on","route":"1","mac":"0000000000000000"}`, 400, "invalid_request", "/device"},
		{"wrong method", "GET", "/v1/taps", ``, 405, "invalid_request", ""},
		{"no such endpoint", "GET", "/v1/fares", ``, 404, "not_found", ""},
		{"empty upload", "POST", "/v1/uploads", `{"taps":[]}`, 400, "invalid_request", "/taps"},
		{"bad since", "GET", "/v1/denylist?since=x", ``, 400, "invalid_request", "since"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, f.base+c.path, strings.NewReader(c.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e transit.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || e.Code != c.code || e.Field != c.field || e.Message == "" {
				t.Errorf("got %d %+v, want %d %s at %q", resp.StatusCode, e, c.status, c.code, c.field)
			}
			if c.path == "/v1/taps" && c.method == "POST" && e.Decision != "offline" {
				t.Errorf("an online tap's error does not say to decide offline: %+v", e)
			}
		})
	}
	if n := len(f.hub.fake.Submitted()); n != 0 {
		t.Errorf("bad requests reached the hub %d times", n)
	}
}

func TestMicroBatching(t *testing.T) {
	f := start(t, map[string]any{"batch_window_ms": 5})
	c := f.client(t)
	const n = 400
	keys := make([][]byte, n)
	for i := range keys {
		var err error
		if keys[i], err = f.hub.register(context.Background(), sim.Device{ID: fmt.Sprintf("GATE-%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxFor(t, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			tp := signed(t, keys[i], fmt.Sprintf("GATE-%03d", i), 1, alice, false)
			a, err := c.Tap(ctx, tp, 2*time.Second)
			switch {
			case err != nil:
				errs <- err
			case a.Status != sim.Charged && a.Status != sim.Declined || a.Device != tp.Device || a.Seq != 1:
				errs <- fmt.Errorf("tap %d answered %+v", i, a)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	answered, _ := f.hub.answered()
	submits := f.hub.count("online")
	t.Logf("%d concurrent online taps in %d transit.taps.v1 messages", n, submits)
	if len(answered) != n || submits > n/10 {
		t.Errorf("the hub answered %d taps in %d messages; want %d in at most %d", len(answered), submits, n, n/10)
	}
}

func TestDeadlineDecidesOffline(t *testing.T) {
	f := start(t, nil)
	v := f.validator(t, "BUS-0002")
	ctx := ctxFor(t, 10*time.Second)
	f.hub.fake.SetDelay(2 * time.Second)
	begin := time.Now()
	d := v.Tap(ctx, alice)
	took := time.Since(begin)
	if d.Online || !d.Allowed || !strings.Contains(d.Reason, "timeout") {
		t.Fatalf("decision = %+v", d)
	}
	if took > sim.DefaultDeadline+200*time.Millisecond {
		t.Errorf("the offline decision took %s", took)
	}
	// The front end answers before the validator's own deadline, saying so.
	key, _ := f.hub.register(ctx, sim.Device{ID: "BUS-0003"})
	_, err := f.client(t).Tap(ctx, signed(t, key, "BUS-0003", 1, bob, false), 200*time.Millisecond)
	var e *sim.Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusGatewayTimeout || e.Code != sdk.CodeTimeout || e.Decision != "offline" {
		t.Fatalf("got %v", err)
	}
	f.hub.fake.SetDelay(0)
	if v.Queued() != 1 {
		t.Fatalf("%d taps queued", v.Queued())
	}
	if n, err := v.Upload(ctx); err != nil || n != 1 {
		t.Fatalf("upload: %d, %v", n, err)
	}
	if err := v.Check(); err != nil {
		t.Error(err)
	}
	answered, twice := f.hub.answered()
	if r := answered[sim.TapID{Device: "BUS-0002", Seq: 1}]; r.Status != transit.StatusCharged || len(twice) > 0 {
		t.Errorf("the hub has %+v, posted twice: %v", r, twice)
	}

	// With the hub down, the answer comes at once.
	f.hub.fake.FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "ledger paused"})
	if d := v.Tap(ctx, alice); d.Online || !d.Allowed || !strings.Contains(d.Reason, "503 unavailable") {
		t.Errorf("hub down: %+v", d)
	}
	if _, err := v.Upload(ctx); err == nil || v.Queued() != 1 {
		t.Errorf("upload with the hub down: %v, %d queued", err, v.Queued())
	}
	f.hub.fake.FailWith(nil)
	if _, err := v.Upload(ctx); err != nil || v.Queued() != 0 {
		t.Errorf("upload: %v, %d queued", err, v.Queued())
	}
}

func TestUploadRefusesOnlyBadTaps(t *testing.T) {
	f := start(t, nil)
	ctx := ctxFor(t, 10*time.Second)
	key, _ := f.hub.register(ctx, sim.Device{ID: "BUS-0004"})
	taps := make([]tap.Tap, 6)
	for i := range taps {
		taps[i] = signed(t, key, "BUS-0004", int64(i+1), alice, true)
	}
	taps[2].Card = bob // altered after signing: its MAC no longer fits
	raw, _ := json.Marshal(map[string]any{"taps": taps})
	// Tap 5 is malformed: the plugin refuses it without troubling the hub.
	body := strings.Replace(string(raw), `"seq":5,`, `"seq":5,"colour":"red",`, 1)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Post(f.base+"/v1/uploads", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a transit.UploadAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	want := []string{"charged", "charged", "refused", "charged", "refused", "charged"}
	for i, r := range a.Results {
		if r.Status != want[i] || r.Seq != int64(i+1) || r.Device != "BUS-0004" {
			t.Errorf("tap %d: %+v, want %s", i+1, r, want[i])
		}
	}
	if a.Results[2].Reason != "tap_mac_invalid" || a.Results[4].Reason != "unknown_field" || a.Results[4].Field != "/taps/4/colour" {
		t.Errorf("reasons: %+v, %+v", a.Results[2], a.Results[4])
	}
	// The hub posted neither seq 3 (refused) nor seq 5 (never sent): gaps.
	if len(a.Gaps) != 2 || a.Gaps[0] != (transit.Gap{Device: "BUS-0004", From: 3, To: 3}) || a.Gaps[1] != (transit.Gap{Device: "BUS-0004", From: 5, To: 5}) {
		t.Errorf("gaps = %+v", a.Gaps)
	}
}

func TestReplayedUploadPostsNothingTwice(t *testing.T) {
	f := start(t, nil)
	ctx := ctxFor(t, 10*time.Second)
	c := f.client(t)
	key, _ := f.hub.register(ctx, sim.Device{ID: "BUS-0005"})
	var taps []tap.Tap
	for i := range 4 {
		taps = append(taps, signed(t, key, "BUS-0005", int64(i+1), bob, true))
	}
	first, err := c.Upload(ctx, taps[:3])
	if err != nil {
		t.Fatal(err)
	}
	// The same upload again (the answer was lost), then a longer one.
	again, err := c.Upload(ctx, taps[:3])
	if err != nil {
		t.Fatal(err)
	}
	longer, err := c.Upload(ctx, taps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if first.Results[i].Status != sim.Charged || again.Results[i].Status != sim.Duplicate || longer.Results[i].Status != sim.Duplicate {
			t.Errorf("tap %d: %s, then %s, then %s", i+1, first.Results[i].Status, again.Results[i].Status, longer.Results[i].Status)
		}
		if *again.Results[i].Fare != *first.Results[i].Fare || again.Results[i].Transfer != first.Results[i].Transfer {
			t.Errorf("tap %d: the duplicate does not repeat the first result: %+v", i+1, again.Results[i])
		}
	}
	if longer.Results[3].Status != sim.Charged {
		t.Errorf("tap 4: %+v", longer.Results[3])
	}
	_, twice := f.hub.answered()
	if len(twice) > 0 || f.hub.balance(bob) != startingBalance-4*fare {
		t.Errorf("posted twice: %v; bob has %d", twice, f.hub.balance(bob))
	}
}

func TestLargeUploadIsSplit(t *testing.T) {
	f := start(t, nil)
	ctx := ctxFor(t, 20*time.Second)
	key, _ := f.hub.register(ctx, sim.Device{ID: "METRO-0001"})
	taps := make([]tap.Tap, 2500)
	for i := range taps {
		taps[i] = signed(t, key, "METRO-0001", int64(i+1), fmt.Sprintf("31009900%08d", i), true)
	}
	// The hub refuses the second message of the batch as a whole: its taps
	// are answered retry, the others charged.
	f.hub.fake.RespondWith(func(m sdk.Message) (json.RawMessage, error) {
		if strings.HasPrefix(m.IdempotencyKey, "taps:METRO-0001:1001:") {
			return nil, &sdk.Error{Code: "internal", Message: "the fare tables are being reloaded"}
		}
		return f.hub.respond(m)
	})
	c := f.client(t)
	a, err := c.Upload(ctx, taps)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range a.Results {
		want := sim.Charged
		if i >= 1000 && i < 2000 {
			want = sim.Retry
		}
		if r.Status != want || r.Seq != int64(i+1) {
			t.Fatalf("tap %d: %+v, want %s", i+1, r, want)
		}
	}
	if n := f.hub.count("upload"); n != 2 {
		t.Errorf("the hub applied %d messages, want 2", n)
	}
	// Uploaded again: the retried taps are charged, the rest duplicates.
	f.hub.fake.RespondWith(f.hub.respond)
	a, err = c.Upload(ctx, taps)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range a.Results {
		want := sim.Duplicate
		if i >= 1000 && i < 2000 {
			want = sim.Charged
		}
		if r.Status != want {
			t.Fatalf("again, tap %d: %+v, want %s", i+1, r, want)
		}
	}
	if n := f.hub.count("upload"); n != 3 {
		t.Errorf("the hub applied %d messages, want 3", n)
	}
}

func TestDenylist(t *testing.T) {
	f := start(t, nil)
	ctx := ctxFor(t, 10*time.Second)
	c := f.client(t)
	f.hub.deny([]string{carol, bob}, nil) // version 1, after the plugin loaded version 0
	type info struct{ Version, Size int64 }
	changed := func(version int64) info {
		t.Helper()
		replies, err := f.h.Handle(plugintest.NewMessage(transit.TypeDenylistChanged, map[string]any{"version": version}))
		if err != nil {
			t.Fatal(err)
		}
		var s info
		if len(replies) != 1 || replies[0].Type != transit.TypeDenylist || json.Unmarshal(replies[0].Payload, &s) != nil {
			t.Fatalf("replies = %+v", replies)
		}
		return s
	}
	if s := changed(1); s.Version != 1 || s.Size != 2 {
		t.Fatalf("after the push: %+v", s)
	}
	full, err := c.Denylist(ctx, -1, 0)
	if err != nil || !full.Full || full.Version != 1 || strings.Join(full.Cards, ",") != bob+","+carol {
		t.Fatalf("full: %+v %v", full, err)
	}
	// A validator at version 1 waits for the next change.
	got := make(chan sim.Denylist, 1)
	go func() {
		d, err := c.Denylist(ctx, 1, 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	time.Sleep(100 * time.Millisecond)
	f.hub.deny([]string{alice}, []string{bob}) // version 2
	changed(2)
	select {
	case d := <-got:
		if d.Full || d.Since != 1 || d.Version != 2 || strings.Join(d.Add, ",") != alice || strings.Join(d.Remove, ",") != bob {
			t.Errorf("long poll: %+v", d)
		}
	case <-ctx.Done():
		t.Fatal("the long poll did not wake")
	}
	// The same push again changes nothing; an older one neither.
	if s := changed(2); s.Version != 2 || s.Size != 2 {
		t.Errorf("pushed twice: %+v", s)
	}
	changed(1)
	f.hub.deny(nil, []string{carol}) // version 3, found by the next refresh
	changed(3)
	d, err := c.Denylist(ctx, 1, 0)
	if err != nil || d.Full || d.Version != 3 || strings.Join(d.Add, ",") != alice || strings.Join(d.Remove, ",") != bob+","+carol {
		t.Errorf("since 1: %+v %v", d, err)
	}
	if d, _ := c.Denylist(ctx, 3, 0); d.Full || d.Version != 3 || len(d.Add)+len(d.Remove) != 0 {
		t.Errorf("since 3: %+v", d)
	}
	// A version the plugin never had gets the full list.
	if d, _ := c.Denylist(ctx, 77, 0); !d.Full || d.Version != 3 || strings.Join(d.Cards, ",") != alice {
		t.Errorf("since 77: %+v", d)
	}
	// A validator follows along.
	v := f.validator(t, "BUS-0006")
	if err := v.PollDenylist(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if ver, n := v.DenylistVersion(); ver != 3 || n != 1 || !v.Denied(alice) {
		t.Errorf("validator at %d with %d cards", ver, n)
	}
	if d := v.Tap(ctx, alice); d.Allowed || d.Seq != 0 {
		t.Errorf("a denied card: %+v", d)
	}
}

func TestNotServingWithoutDenylist(t *testing.T) {
	fake := plugintest.NewFakeHub() // answers no deny list query
	p := transit.New(transit.WithLogger(testLog()))
	h := plugintest.Start(t, p, plugintest.WithHub(fake))
	if err := h.Configure(map[string]any{"denylist_refresh_ms": 1000}); err != nil {
		t.Fatal(err)
	}
	if err := h.Health(); err == nil || !strings.Contains(err.Error(), "no deny list") || !strings.Contains(err.Error(), p.Addr()) {
		t.Fatalf("health: %v", err)
	}
	c := sim.NewClient("http://"+p.Addr(), &http.Client{Transport: &http.Transport{DisableKeepAlives: true}})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := c.Health(ctx); err == nil {
		t.Error("the front end serves without a deny list")
	}
	if _, err := c.Denylist(ctx, -1, 0); err == nil {
		t.Error("a deny list was served before the hub gave one")
	}
	fake.SetQuery("denylist", "", map[string]any{"version": 4, "cards": []string{carol}})
	fake.SetQuery(sdk.QueryDenylistVersion, "", map[string]any{"version": 4, "size": 1})
	for h.Health() != nil {
		if ctx.Err() != nil {
			t.Fatal("still not serving")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if hl, err := c.Health(ctx); err != nil || hl.DenylistVersion != 4 || hl.Listen != p.Addr() {
		t.Errorf("health: %+v %v", hl, err)
	}
	replies, err := h.Handle(plugintest.NewMessage(transit.TypeStatusQuery, map[string]any{}))
	var s transit.Status
	if err != nil || len(replies) != 1 || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen != p.Addr() || !s.Serving || s.DenylistSize != 1 {
		t.Errorf("status: %+v %v", replies, err)
	}
}

// TestDenylistReset follows a hub whose deny list went back to an earlier
// version, as after a restore: the hub's list is the truth.
func TestDenylistReset(t *testing.T) {
	f := start(t, map[string]any{"denylist_refresh_ms": 1000})
	for range 3 {
		f.hub.deny([]string{carol}, nil)
	}
	changed, err := f.h.Handle(plugintest.NewMessage(transit.TypeDenylistChanged, map[string]any{"version": 3}))
	if err != nil || !strings.Contains(string(changed[0].Payload), `"version":3`) {
		t.Fatalf("%v %v", changed, err)
	}
	f.hub.fake.SetQuery(sdk.QueryDenylistVersion, "", map[string]any{"version": 1, "size": 1})
	f.hub.fake.SetQuery("denylist", "", map[string]any{"version": 1, "cards": []string{bob}})
	c := f.client(t)
	ctx := ctxFor(t, 10*time.Second)
	for {
		d, err := c.Denylist(ctx, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Version == 1 {
			if !d.Full || strings.Join(d.Cards, ",") != bob {
				t.Errorf("after the reset: %+v", d)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the plugin did not follow the hub's reset")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestConfiguration(t *testing.T) {
	h := plugintest.Start(t, transit.New(transit.WithLogger(testLog())))
	for _, c := range []struct {
		cfg   any
		field string
	}{
		{map[string]any{"listen": "nowhere"}, "/listen"},
		{map[string]any{"online_deadline_ms": 10}, "/online_deadline_ms"},
		{map[string]any{"batch_size": 5000}, "/batch_size"},
		{map[string]any{"deadline": 300}, "/deadline"},
	} {
		err := h.Configure(c.cfg)
		var e *sdk.Error
		if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || e.Field != c.field {
			t.Errorf("%v: got %v, want config_invalid at %s", c.cfg, err, c.field)
		}
	}
	// An empty configuration is a working one; so is a second.
	for range 2 {
		if err := h.Configure(nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFleet runs 200 validators against the plugin through a hub outage
// and a radio outage, then checks that every tap was answered exactly once
// and posted at most once.
func TestFleet(t *testing.T) {
	f := start(t, nil)
	ctx := ctxFor(t, 30*time.Second)
	cards := make([]string, 50)
	for i := range cards {
		cards[i] = fmt.Sprintf("31009911%08d", i)
	}
	f.hub.deny([]string{cards[0], cards[1]}, nil)
	fleet, err := sim.NewFleet(ctx, sim.FleetConfig{URL: f.base, Validators: 200, Prefix: "BUS", Keys: f.hub.register, Cards: cards,
		TapEvery: 500 * time.Millisecond, UploadEvery: 400 * time.Millisecond, PollEvery: time.Second, Seed: 1,
		// A shared CI machine under -race cannot promise 300 ms; the
		// deadline itself is TestDeadlineDecidesOffline's.
		Deadline: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.PollDenylist(ctx); err != nil {
		t.Fatal(err)
	}
	// The fleet runs until the last phase has been seen; each phase ends when
	// the counters show the fleet went through it.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { fleet.Run(runCtx, phaseTimeout*5) })
	const enough = 50 // taps a phase must see before the next one starts
	c := waitCounts(t, fleet, "taps are answered online", func(c sim.Counts) bool {
		return c.OnlineAnswers >= enough && c.Charged > 0
	})
	// The hub restarts: the front end cannot answer, so validators decide offline.
	f.hub.fake.FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the hub is restarting"})
	c = waitCounts(t, fleet, "taps are decided offline while the hub is down", func(n sim.Counts) bool {
		return n.OfflineDecisions >= c.OfflineDecisions+enough
	})
	f.hub.fake.FailWith(nil)
	f.hub.deny([]string{cards[2]}, []string{cards[0]})
	c = waitCounts(t, fleet, "taps are answered online once the hub is back", func(n sim.Counts) bool {
		return n.OnlineAnswers >= c.OnlineAnswers+enough && n.Uploads > c.Uploads
	})
	// The radio goes: requests fail at the validator.
	fleet.SetLink(false)
	c = waitCounts(t, fleet, "taps are decided offline without a radio", func(n sim.Counts) bool {
		return n.OfflineDecisions >= c.OfflineDecisions+enough && n.UploadFailures > c.UploadFailures
	})
	fleet.SetLink(true)
	waitCounts(t, fleet, "taps are answered online once the radio is back", func(n sim.Counts) bool {
		return n.OnlineAnswers >= c.OnlineAnswers+enough && n.Taps >= 500
	})
	stop()
	wg.Wait()
	if err := fleet.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	counts := fleet.Counts()
	t.Logf("fleet: %+v; hub: %d online and %d upload messages", counts, f.hub.count("online"), f.hub.count("upload"))
	if err := fleet.Check(); err != nil {
		t.Fatal(err)
	}
	if counts.OnlineAnswers == 0 || counts.OfflineDecisions == 0 || counts.Uploads == 0 || counts.Charged == 0 || counts.Taps < 500 {
		t.Errorf("the run did not exercise both paths: %+v", counts)
	}
	if got := counts.OnlineAnswers + counts.OfflineDecisions; got != counts.Taps {
		t.Errorf("%d taps, %d decided", counts.Taps, got)
	}
	// Every tap the fleet made has the hub's result, and no fare was posted twice.
	answered, twice := f.hub.answered()
	made := fleet.Taps()
	if len(twice) > 0 {
		t.Errorf("%d taps posted twice, e.g. %v", len(twice), twice[0])
	}
	for id, status := range made {
		r, ok := answered[id]
		if !ok {
			t.Fatalf("tap %v (%s at the validator) never reached the hub", id, status)
		}
		if status != r.Status && !(status == sim.Duplicate && r.Status != sim.Refused) {
			t.Fatalf("tap %v: the validator has %s, the hub %s", id, status, r.Status)
		}
	}
	if len(answered) != len(made) {
		t.Errorf("the hub answered %d taps, the fleet made %d", len(answered), len(made))
	}
	// Everyone ends with the hub's deny list.
	if err := fleet.PollDenylist(ctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range fleet.Validators() {
		if ver, n := v.DenylistVersion(); ver != 2 || n != 2 || !v.Denied(cards[2]) || v.Denied(cards[0]) {
			t.Fatalf("%s ends at deny list version %d with %d cards", v.Device().ID, ver, n)
		}
	}
}
