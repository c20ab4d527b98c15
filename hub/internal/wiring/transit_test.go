package wiring_test

import (
	"context"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/transit"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// validator signs taps as a registered device does.
type validator struct {
	t   *testing.T
	id  string
	key []byte
	seq int64
}

func (v *validator) tap(card string, at time.Time, offline bool) tap.Tap {
	v.seq++
	return v.tapSeq(v.seq, card, at, offline)
}

func (v *validator) tapSeq(seq int64, card string, at time.Time, offline bool) tap.Tap {
	tp := tap.Tap{Device: v.id, Seq: seq, Card: card, At: at, Kind: tap.On, Route: "15", Stop: "", Offline: offline}
	mac, err := tap.Sign(v.key, tp)
	if err != nil {
		v.t.Fatal(err)
	}
	tp.MAC = mac
	return tp
}

// TestTransitTaps posts online and offline taps through the transit
// service on both drivers: fares charged, a tap posted once, forged and
// unknown-device taps refused and not stored, gaps flagged, an offline ride
// into debt putting the card on the deny list and a top-up taking it off,
// a lost card on the list, and one merchant credit per batch.
func TestTransitTaps(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		t.Cleanup(pin.SetCostForTesting(1, 8))
		// Taps from earlier today: the hub refuses taps from the future.
		now := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)
		app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
			Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }}})
		if err != nil {
			t.Fatal(err)
		}
		c, stop, done := serve(t, app)
		t.Cleanup(func() { stop(); <-done })
		c.must("POST", "/v1/merchants", map[string]any{"id": "M-CITYBUS", "name": "City Bus", "mcc": "4131", "settlement_account": "1"}, 201)
		dev := c.must("POST", "/v1/transit/devices", map[string]any{"id": "BUS-1", "operator": "city-bus", "mode": "bus", "route": "15"}, 201)
		matches(t, "api-device", dev)
		key, err := hex.DecodeString(dev["key"].(string))
		if err != nil || len(key) != tap.KeySize {
			t.Fatalf("device key %v", dev["key"])
		}
		if st, m, _ := c.do("POST", "/v1/transit/devices", map[string]any{"id": "BUS-1", "operator": "city-bus"}); st != 409 {
			t.Fatalf("second registration of BUS-1: %d %v", st, m)
		}
		devices := c.must("GET", "/v1/transit/devices", nil, 200)
		matches(t, "api-devices", devices)
		if list := devices["devices"].([]any); len(list) != 1 || list[0].(map[string]any)["key"] != nil {
			t.Fatalf("device list shows %v", list)
		}
		issue := func(amount int) string {
			n := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
			if amount > 0 {
				c.must("POST", "/v1/cards/"+n+"/topups", map[string]any{"amount": amount, "currency": "CNY"}, 201)
			}
			return n
		}
		rich, poor, lost := issue(1000), issue(100), issue(1000)
		v := &validator{t: t, id: "BUS-1", key: key}
		svc := app.Transit()
		post := func(taps ...tap.Tap) *transit.Result {
			t.Helper()
			r, err := svc.Taps(context.Background(), "plugin:transit", taps)
			if err != nil {
				t.Fatal(err)
			}
			matches(t, "msg-transit-taps-result-v1", r)
			return r
		}

		// Online: 2.00 on route 15.
		first := v.tap(rich, now, false)
		r := post(first)
		if got := r.Results[0]; got.Status != "charged" || got.Fare != 200 || got.Balance != 800 || got.Transfer == "" {
			t.Fatalf("online tap: %+v", got)
		}
		// The same tap again is the first answer, posted once.
		r = post(first)
		if got := r.Results[0]; got.Status != "duplicate" || got.Fare != 200 || got.Balance != 800 {
			t.Fatalf("resent tap: %+v", got)
		}
		// A forged tap (its MAC made with another key) and a tap from an
		// unknown device are refused and not stored; the good tap beside
		// them is posted.
		forged := v.tapSeq(2, rich, now, false)
		forged.Card = poor
		stranger := (&validator{t: t, id: "BUS-9", key: key}).tap(rich, now, false)
		good := v.tapSeq(5, rich, now.Add(30*time.Minute), false)
		r = post(forged, stranger, good)
		if r.Results[0].Status != "refused" || r.Results[0].Reason != "mac_invalid" ||
			r.Results[1].Status != "refused" || r.Results[1].Reason != "device_unknown" ||
			r.Results[2].Status != "charged" {
			t.Fatalf("forged, stranger, good: %+v", r.Results)
		}
		// Seq 5 after 1: 2 to 4 were never heard from.
		if len(r.Gaps) != 1 || r.Gaps[0].From != 2 || r.Gaps[0].To != 4 {
			t.Fatalf("gaps %+v", r.Gaps)
		}
		page := c.must("GET", "/v1/transit/devices/BUS-1/taps", nil, 200)
		matches(t, "api-taps", page)
		taps := page["taps"].([]any)
		if len(taps) != 2 {
			t.Fatalf("stored taps %v, want seq 1 and 5 only", taps)
		}
		// The real seq 2, uploaded later, is posted: the forgery did not
		// take its number.
		if got := post(v.tapSeq(2, rich, now, true)).Results[0]; got.Status != "charged" {
			t.Fatalf("late real seq 2: %+v", got)
		}
		// A tap the fares refuse (a route the operator does not run) is the
		// device's, and stored: its number is no gap.
		v.seq = 5
		bad := v.tap(rich, now.Add(40*time.Minute), false)
		bad.Route = "999"
		if bad.MAC, err = tap.Sign(key, bad); err != nil {
			t.Fatal(err)
		}
		r = post(bad, v.tap(rich, now.Add(41*time.Minute), false))
		if r.Results[0].Status != "refused" || r.Results[0].Reason != "invalid_request" || r.Results[1].Status != "charged" {
			t.Fatalf("unknown route, then a good tap: %+v", r.Results)
		}
		if len(r.Gaps) != 0 {
			t.Fatalf("seq 6, refused by the fares, reported as a gap: %+v", r.Gaps)
		}

		// Offline, the poor card (1.00 on it) rides for 2.00 into debt:
		// first-ride risk, then the deny list.
		v0 := c.must("GET", "/v1/transit/denylist", nil, 200)["version"].(float64)
		v.seq = 7
		got := post(v.tap(poor, now.Add(2*time.Hour), true)).Results[0]
		if got.Status != "charged" || got.Balance >= 0 || !got.Denied {
			t.Fatalf("offline ride into debt: %+v", got)
		}
		if v0 != 0 {
			t.Fatalf("deny list version %v before any card was on it", v0)
		}
		// Since version 0 a validator gets the whole list.
		inc := c.must("GET", "/v1/transit/denylist?since=0", nil, 200)
		if cards, _ := inc["cards"].([]any); len(cards) != 1 || cards[0] != poor || inc["full"] != true || inc["version"] != 1.0 {
			t.Fatalf("deny list: %v", inc)
		}
		// Online, a card in debt is declined.
		if got := post(v.tap(poor, now.Add(3*time.Hour), false)).Results[0]; got.Status != "declined" || got.Reason != "insufficient_funds" {
			t.Fatalf("online tap in debt: %+v", got)
		}
		// A top-up pays the debt first and takes the card off the list.
		v1 := c.must("GET", "/v1/transit/denylist", nil, 200)["version"].(float64)
		c.must("POST", "/v1/cards/"+poor+"/topups", map[string]any{"amount": 500, "currency": "CNY"}, 201)
		inc = c.must("GET", "/v1/transit/denylist?since="+itoa(int64(v1)), nil, 200)
		if rm, _ := inc["remove"].([]any); len(rm) != 1 || rm[0] != poor {
			t.Fatalf("deny list after the top-up: %v", inc)
		}

		// A lost card goes on the list: declined online, charged offline
		// (the validator let the rider on before it knew).
		c.must("POST", "/v1/cards/"+lost+"/loss", nil, 200)
		full := c.must("GET", "/v1/transit/denylist", nil, 200)
		matches(t, "api-denylist", full)
		if cards, _ := full["cards"].([]any); len(cards) != 1 || cards[0] != lost || full["full"] != true {
			t.Fatalf("full deny list: %v", full)
		}
		r = post(v.tap(lost, now.Add(4*time.Hour), false), v.tap(lost, now.Add(4*time.Hour+time.Minute), true))
		if r.Results[0].Status != "declined" || r.Results[0].Reason != "card_lost" || r.Results[1].Status != "charged" {
			t.Fatalf("lost card online, offline: %+v", r.Results)
		}

		// A bank card held to the validator is declined as not taken on
		// transit; an unknown city card as not found.
		r = post(v.tap("6222020000000000001", now.Add(4*time.Hour), false), v.tap("3100990000099999", now.Add(4*time.Hour), false))
		if r.Results[0].Reason != "channel_not_allowed" || r.Results[1].Reason != "card_not_found" {
			t.Fatalf("bank card, unknown city card: %+v", r.Results)
		}

		// One batch of three riders: one fares transfer, the merchant
		// credited once with the sum.
		r = post(v.tap(rich, now.Add(5*time.Hour), true), v.tap(poor, now.Add(5*time.Hour), true), v.tap(lost, now.Add(5*time.Hour), true))
		ids := map[string]bool{}
		for _, x := range r.Results {
			if x.Status != "charged" {
				t.Fatalf("batch tap %+v", x)
			}
			ids[x.Transfer] = true
		}
		if len(ids) != 1 {
			t.Fatalf("a batch of three taps made transfers %v, want one", ids)
		}
		var id int64
		for k := range ids {
			id = atoi(k)
		}
		tr, err := st.GetTransfer(context.Background(), id)
		if err != nil || tr.Kind != transit.TransferFares || len(tr.Entries) != 4 || tr.Amount != 600 {
			t.Fatalf("fares transfer %+v %v", tr, err)
		}
		rep, err := ledger.Verify(context.Background(), st)
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %v %v", err, rep.Problems)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
