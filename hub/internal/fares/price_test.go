package fares

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/citycard/citycard/schemas"
)

// TestPeriods pins the cap periods to instants: days and weeks turn at
// midnight Asia/Shanghai (16:00 UTC), weeks on Monday.
func TestPeriods(t *testing.T) {
	tb := mustDefault(t)
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		at           string
		date, monday string
	}{
		{"2026-11-22T15:59:59Z", "2026-11-22", "2026-11-16"}, // Sunday 23:59:59 local
		{"2026-11-22T16:00:00Z", "2026-11-23", "2026-11-23"}, // Monday 00:00 local
		{"2026-11-26T03:00:00Z", "2026-11-26", "2026-11-23"},
		{"2026-11-29T15:59:59Z", "2026-11-29", "2026-11-23"}, // Sunday 23:59:59 local
		{"2026-11-29T16:00:00Z", "2026-11-30", "2026-11-30"},
		{"1970-01-01T00:00:00Z", "1970-01-01", "1969-12-29"},
		{"1969-12-31T12:00:00Z", "1969-12-31", "1969-12-29"},
	}
	for _, c := range cases {
		day, week := tb.period(utc(c.at))
		date := func(d int32) string { return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly) }
		if date(day) != c.date || date(week) != c.monday {
			t.Errorf("%s: day %s, week from %s; want %s, %s", c.at, date(day), date(week), c.date, c.monday)
		}
	}
}

func TestErrors(t *testing.T) {
	tb := mustDefault(t)
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, tb.Location())
	st := RiderState{Category: "student", LastAt: 1, Day: 2}
	cases := []struct {
		tap   Tap
		st    RiderState
		field string
		err   error
	}{
		{Tap{At: at, Kind: TapOn, Operator: "tram", Route: "1"}, st, "operator", ErrUnknownOperator},
		{Tap{At: at, Kind: TapOn, Operator: "city-bus", Route: "99"}, st, "route", ErrUnknownRoute},
		{Tap{At: at, Kind: TapOff, Operator: "metro", Route: "metro", Stop: "M99"}, st, "stop", ErrUnknownStop},
		{Tap{At: at, Kind: "through", Operator: "city-bus", Route: "1"}, st, "kind", ErrInvalidTap},
		{Tap{Kind: TapOn, Operator: "city-bus", Route: "1"}, st, "at", ErrInvalidTap},
		{Tap{At: at, Kind: TapOn, Operator: "city-bus", Route: "1"}, RiderState{Category: "vip"}, "category", ErrUnknownCategory},
	}
	for _, c := range cases {
		q, next, err := tb.Price(c.st, c.tap)
		var fe *Error
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, c.err) {
			t.Errorf("%+v: %v; want %s %v", c.tap, err, c.field, c.err)
			continue
		}
		if next != c.st || q.Charge != 0 || q.Lines != nil {
			t.Errorf("%+v: a refused tap changed the state or charged: %+v %+v", c.tap, q, next)
		}
		if def, ok := schemas.LookupError(fe.Code); !ok || def.Kind != schemas.KindError {
			t.Errorf("%s: code %q is not an error in schemas/errors.json", c.field, fe.Code)
		}
	}
}

func TestPriceBatch(t *testing.T) {
	tb := mustDefault(t)
	at := func(hm string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", "2026-11-23 "+hm, tb.Location())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A validator's upload, newest first, with a bad tap in the middle.
	batch := []Tap{
		{At: at("09:20"), Kind: TapOff, Operator: "metro", Route: "metro", Stop: "M03"},
		{At: at("09:10"), Kind: TapOn, Operator: "city-bus", Route: "99"},
		{At: at("09:00"), Kind: TapOn, Operator: "metro", Route: "metro", Stop: "M01"},
		{At: at("08:30"), Kind: TapOn, Operator: "city-bus", Route: "1"},
	}
	quotes, errs, st := tb.PriceBatch(RiderState{}, batch)
	want := []struct {
		charge, refund int64
		err            error
	}{{0, 200, nil}, {0, 0, ErrUnknownRoute}, {400, 0, nil}, {200, 0, nil}}
	for i, w := range want {
		if quotes[i].Charge != w.charge || quotes[i].Refund != w.refund || !errors.Is(errs[i], w.err) {
			t.Errorf("tap %d: %+v, %v; want charge %d refund %d, %v", i, quotes[i], errs[i], w.charge, w.refund, w.err)
		}
	}
	if st.DaySpent != 400 || st.Open.At != 0 || st.Journey.Transfers != 1 {
		t.Errorf("state %+v", st)
	}
}

// TestStateJSON shows what the hub stores per card: a few short fields.
func TestStateJSON(t *testing.T) {
	tb := mustDefault(t)
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, tb.Location())
	_, st, err := tb.Price(RiderState{Category: "student"}, Tap{At: at, Kind: TapOn, Operator: "metro", Route: "metro", Stop: "M01"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"category":"student","last_at":1795392000,"day":20780,"day_spent":250,"week":20780,"week_spent":250,` +
		`"journey":{"start":1795392000,"last":1795392000,"transfers":0,"operator":"metro","mode":"metro","route":"metro"},` +
		`"open":{"operator":"metro","route":"metro","stop":"M01","at":1795392000,"day":20780,"week":20780,"charged":250,"discount":0,"room":600}}`
	if string(b) != want {
		t.Errorf("state JSON\n got %s\nwant %s", b, want)
	}
	if b, _ := json.Marshal(RiderState{}); string(b) != `{}` {
		t.Errorf("a new card's state is %s", b)
	}
}
