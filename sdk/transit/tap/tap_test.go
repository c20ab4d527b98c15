package tap

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var key = bytes.Repeat([]byte{0x5a}, KeySize)

func sample() Tap {
	return Tap{Device: "BUS-0001", Seq: 7, Card: "3100990000000013",
		At:   time.Date(2026, 11, 26, 8, 30, 0, 123000000, time.FixedZone("CST", 8*3600)),
		Kind: On, Route: "12", Stop: "S05"}
}

func TestSignVerify(t *testing.T) {
	tp := sample()
	mac, err := Sign(key, tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(mac) != MACSize {
		t.Fatalf("mac %q", mac)
	}
	tp.MAC = mac
	if !Verify(key, tp) {
		t.Fatal("a tap's own MAC does not verify")
	}
	if _, err := Check(tp); err != nil {
		t.Fatal(err)
	}
	// The same instant in another zone is the same tap.
	same := tp
	same.At = tp.At.UTC()
	if !Verify(key, same) {
		t.Error("the MAC depends on the time zone the time is written in")
	}
	// Altering any field, or the key, breaks it.
	for name, alter := range map[string]func(*Tap){
		"device":  func(x *Tap) { x.Device = "BUS-0002" },
		"seq":     func(x *Tap) { x.Seq = 8 },
		"card":    func(x *Tap) { x.Card = "3100990000000021" },
		"at":      func(x *Tap) { x.At = x.At.Add(-time.Minute) },
		"kind":    func(x *Tap) { x.Kind = Off },
		"route":   func(x *Tap) { x.Route = "13" },
		"stop":    func(x *Tap) { x.Stop = "S06" },
		"offline": func(x *Tap) { x.Offline = true },
		"mac":     func(x *Tap) { x.MAC = "0000000000000000" },
	} {
		x := tp
		alter(&x)
		if Verify(key, x) {
			t.Errorf("a tap with its %s altered still verifies", name)
		}
	}
	other := bytes.Repeat([]byte{0x11}, KeySize)
	if Verify(other, tp) {
		t.Error("a tap verifies under another device's key")
	}
	if _, err := Sign(key[:16], tp); err != ErrBadKey {
		t.Errorf("short key: %v", err)
	}
}

func TestCheck(t *testing.T) {
	good := sample()
	good.MAC, _ = Sign(key, good)
	for field, alter := range map[string]func(*Tap){
		"device":       func(x *Tap) { x.Device = "A|B" },
		"device ":      func(x *Tap) { x.Device = "A\fB" },
		"device\u00a0": func(x *Tap) { x.Device = "A\u00a0B" },
		"seq":          func(x *Tap) { x.Seq = 0 },
		"card":         func(x *Tap) { x.Card = "31009900000000AB" },
		"at":           func(x *Tap) { x.At = time.Time{} },
		"kind":         func(x *Tap) { x.Kind = "in" },
		"route":        func(x *Tap) { x.Route = "" },
		"stop":         func(x *Tap) { x.Stop = "a|b" },
		"mac":          func(x *Tap) { x.MAC = "xyz" },
	} {
		x := good
		alter(&x)
		if f, err := Check(x); f != strings.TrimRight(field, " \u00a0") || err == nil {
			t.Errorf("%s: Check = %q, %v", field, f, err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	tp := sample()
	tp.MAC, _ = Sign(key, tp)
	for b.Loop() {
		if !Verify(key, tp) {
			b.Fatal("does not verify")
		}
	}
}
