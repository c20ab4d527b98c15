package fares

import (
	"testing"
	"time"
)

// BenchmarkPrice measures one tap as the hub prices it: a state fetched for
// the card, one call, a new state to store.
func BenchmarkPrice(b *testing.B) {
	tb := mustDefault(b)
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, tb.Location())
	bus := Tap{At: at, Kind: TapOn, Operator: "city-bus", Route: "1"}
	metroOn := Tap{At: at.Add(20 * time.Minute), Kind: TapOn, Operator: "metro", Route: "metro", Stop: "M01"}
	metroOff := Tap{At: at.Add(45 * time.Minute), Kind: TapOff, Operator: "metro", Route: "metro", Stop: "M06"}

	fresh := RiderState{}
	_, afterBus, _ := tb.Price(RiderState{Category: "student"}, bus)
	_, inMetro, _ := tb.Price(afterBus, metroOn)

	cases := []struct {
		name string
		st   RiderState
		tap  Tap
	}{
		{"flat", fresh, bus},
		{"transfer/zones-on", afterBus, metroOn},
		{"zones-off", inMetro, metroOff},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := tb.Price(c.st, c.tap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	// A commuter's fortnight, tap after tap, the state carried over: transfers,
	// tap-offs, caps and new days and weeks all on the path.
	b.Run("commute", func(b *testing.B) {
		day := []Tap{
			{Kind: TapOn, Operator: "city-bus", Route: "15"},
			{Kind: TapOn, Operator: "metro", Route: "metro", Stop: "M02"},
			{Kind: TapOff, Operator: "metro", Route: "metro", Stop: "M09"},
			{Kind: TapOn, Operator: "city-bus", Route: "301", Stop: "S03"},
			{Kind: TapOff, Operator: "city-bus", Route: "301", Stop: "S11"},
			{Kind: TapOn, Operator: "city-bus", Route: "k8"},
		}
		offsets := []time.Duration{0, 25 * time.Minute, 55 * time.Minute, 9 * time.Hour, 9*time.Hour + 40*time.Minute, 11 * time.Hour}
		var taps []Tap
		for d := range 14 {
			for i, tap := range day {
				tap.At = at.Add(time.Duration(d)*24*time.Hour + offsets[i])
				taps = append(taps, tap)
			}
		}
		b.ReportAllocs()
		st := RiderState{}
		i := 0
		for b.Loop() {
			if i == len(taps) {
				i, st = 0, RiderState{}
			}
			var err error
			if _, st, err = tb.Price(st, taps[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
