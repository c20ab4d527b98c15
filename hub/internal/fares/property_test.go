package fares

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type routeRef struct {
	op, route string
	stops     []string // empty for flat fares
}

// routesOf lists every route of the table in a fixed order.
func routesOf(tb *Table) []routeRef {
	var out []routeRef
	for _, opID := range sortedKeys(tb.operators) {
		op := tb.operators[opID]
		for _, rID := range sortedKeys(op.routes) {
			r := op.routes[rID]
			ref := routeRef{op: opID, route: rID}
			if r.needsTapOff() {
				ref.stops = sortedKeys(r.stops)
			}
			out = append(out, ref)
		}
	}
	return out
}

var categories = []string{"", "none", "senior", "student", "disabled"}

// genTaps draws a week or so of one card's taps in time order: rides on
// every kind of route, most settled by a tap-off, some not, some tap-offs
// with no ride, gaps from seconds to days.
func genTaps(refs []routeRef, loc *time.Location) *rapid.Generator[[]Tap] {
	return rapid.Custom(func(t *rapid.T) []Tap {
		at := time.Date(2026, 11, 23, 5, 0, 0, 0, loc).Add(time.Duration(rapid.IntRange(0, 7*24*60).Draw(t, "start")) * time.Minute)
		n := rapid.IntRange(1, 60).Draw(t, "n")
		var taps []Tap
		for len(taps) < n {
			at = at.Add(time.Duration(rapid.IntRange(0, 6*3600).Draw(t, "gap")) * time.Second)
			r := rapid.SampledFrom(refs).Draw(t, "route")
			tap := Tap{At: at, Kind: TapOn, Operator: r.op, Route: r.route}
			if len(r.stops) > 0 {
				tap.Stop = rapid.SampledFrom(r.stops).Draw(t, "stop")
			}
			if rapid.IntRange(0, 9).Draw(t, "stray") == 0 {
				tap.Kind = TapOff
			}
			taps = append(taps, tap)
			if tap.Kind == TapOn && len(r.stops) > 0 && rapid.IntRange(0, 4).Draw(t, "off") > 0 {
				at = at.Add(time.Duration(rapid.IntRange(60, 200*60).Draw(t, "ride")) * time.Second)
				off := tap
				off.At, off.Kind, off.Stop = at, TapOff, rapid.SampledFrom(r.stops).Draw(t, "off stop")
				taps = append(taps, off)
			}
		}
		return taps
	})
}

// TestPriceProperties checks, over random tap sequences in time order, what
// must hold for every card: no negative charge, no charge above the ride's
// max fare, lines that add up, refunds no larger than what was held, no day
// or week above its cap, and the same answers from the same input, also when
// the state goes through JSON between taps.
func TestPriceProperties(t *testing.T) {
	tb := mustDefault(t)
	refs := routesOf(tb)
	rapid.Check(t, func(rt *rapid.T) {
		category := rapid.SampledFrom(categories).Draw(rt, "category")
		taps := genTaps(refs, tb.Location()).Draw(rt, "taps")
		_, cp, err := tb.concession(category)
		if err != nil {
			rt.Fatal(err)
		}
		st := RiderState{Category: category}
		dayNet, weekNet := map[int32]int64{}, map[int32]int64{}
		var quotes []Quote
		for i, tap := range taps {
			before := st
			q, next, err := tb.Price(st, tap)
			if err != nil {
				rt.Fatalf("tap %d %+v: %v", i, tap, err)
			}
			if !reflect.DeepEqual(before, st) {
				rt.Fatalf("tap %d: Price changed its input state", i)
			}
			if q.Charge < 0 || q.Refund < 0 || (q.Charge > 0 && q.Refund > 0) {
				rt.Fatalf("tap %d: charge %d, refund %d", i, q.Charge, q.Refund)
			}
			maxFare, _ := tb.MaxFare(tap.Operator, tap.Route)
			if q.Charge > maxFare {
				rt.Fatalf("tap %d: charge %d above the ride's max fare %d", i, q.Charge, maxFare)
			}
			var sum int64
			for _, l := range q.Lines {
				sum += l.Amount
			}
			if sum != q.Charge-q.Refund {
				rt.Fatalf("tap %d: lines %v add up to %d, not %d", i, q.Lines, sum, q.Charge-q.Refund)
			}
			if q.Refund > 0 && q.Refund > st.Open.Charged {
				rt.Fatalf("tap %d: refund %d of %d held", i, q.Refund, st.Open.Charged)
			}
			if q.Charge > 0 {
				d, w := tb.period(tap.At)
				dayNet[d] += q.Charge
				weekNet[w] += q.Charge
			}
			if q.Refund > 0 {
				dayNet[st.Open.Day] -= q.Refund
				weekNet[st.Open.Week] -= q.Refund
			}
			quotes = append(quotes, q)
			st = next
		}
		for d, net := range dayNet {
			if net < 0 || (cp.daily >= 0 && net > cp.daily) {
				rt.Fatalf("day %d: paid %d, daily cap %d", d, net, cp.daily)
			}
		}
		for w, net := range weekNet {
			if net < 0 || (cp.weekly >= 0 && net > cp.weekly) {
				rt.Fatalf("week %d: paid %d, weekly cap %d", w, net, cp.weekly)
			}
		}

		// Deterministic, and the state survives being stored as JSON.
		again := RiderState{Category: category}
		for i, tap := range taps {
			b, err := json.Marshal(again)
			if err != nil {
				rt.Fatal(err)
			}
			var stored RiderState
			if err := json.Unmarshal(b, &stored); err != nil {
				rt.Fatal(err)
			}
			if !reflect.DeepEqual(stored, again) {
				rt.Fatalf("tap %d: state %+v came back from JSON as %+v", i, again, stored)
			}
			q, next, _ := tb.Price(stored, tap)
			if !reflect.DeepEqual(q, quotes[i]) {
				rt.Fatalf("tap %d: priced %+v, then %+v", i, quotes[i], q)
			}
			again = next
		}
		if !reflect.DeepEqual(again, st) {
			rt.Fatalf("final state %+v, then %+v", st, again)
		}
	})
}

// TestBatchOrderProperty: a batch prices the same in any upload order as
// its taps do one by one in time order.
func TestBatchOrderProperty(t *testing.T) {
	tb := mustDefault(t)
	refs := routesOf(tb)
	rapid.Check(t, func(rt *rapid.T) {
		taps := genTaps(refs, tb.Location()).Draw(rt, "taps")
		// Distinct times, so the order in time is the only order.
		for i := 1; i < len(taps); i++ {
			if !taps[i].At.After(taps[i-1].At) {
				taps[i].At = taps[i-1].At.Add(time.Second)
			}
		}
		st := RiderState{Category: rapid.SampledFrom(categories).Draw(rt, "category")}
		want := make([]Quote, len(taps))
		wantSt := st
		for i, tap := range taps {
			want[i], wantSt, _ = tb.Price(wantSt, tap)
		}
		perm := rapid.Permutation(seq(len(taps))).Draw(rt, "order")
		shuffled := make([]Tap, len(taps))
		for i, j := range perm {
			shuffled[i] = taps[j]
		}
		got, errs, gotSt := tb.PriceBatch(st, shuffled)
		for i, j := range perm {
			if errs[i] != nil {
				rt.Fatalf("tap %d: %v", j, errs[i])
			}
			if !reflect.DeepEqual(got[i], want[j]) {
				rt.Fatalf("tap %d: batch %+v, in order %+v", j, got[i], want[j])
			}
		}
		if !reflect.DeepEqual(gotSt, wantSt) {
			rt.Fatalf("batch state %+v, in order %+v", gotSt, wantSt)
		}
	})
}

// TestLateTapProperty: taps in any time order, late ones among them, still
// never charge below zero or above the ride's max fare.
func TestLateTapProperty(t *testing.T) {
	tb := mustDefault(t)
	refs := routesOf(tb)
	rapid.Check(t, func(rt *rapid.T) {
		taps := genTaps(refs, tb.Location()).Draw(rt, "taps")
		perm := rapid.Permutation(seq(len(taps))).Draw(rt, "order")
		st := RiderState{Category: rapid.SampledFrom(categories).Draw(rt, "category")}
		for _, j := range perm {
			q, next, err := tb.Price(st, taps[j])
			if err != nil {
				rt.Fatal(err)
			}
			maxFare, _ := tb.MaxFare(taps[j].Operator, taps[j].Route)
			if q.Charge < 0 || q.Refund < 0 || q.Charge > maxFare {
				rt.Fatalf("tap %+v: %+v", taps[j], q)
			}
			if q.Late && q.Transfer {
				rt.Fatalf("a late tap earned a transfer: %+v", q)
			}
			st = next
		}
	})
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return slices.Clip(s)
}
