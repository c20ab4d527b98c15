package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// transitTests are the suite's cases for the transit tables.
var transitTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Devices", testDevices},
	{"TransitBatch", testTransitBatch},
	{"TransitRollback", testTransitRollback},
	{"TransitCheck", testTransitCheck},
	{"LoadTapsMany", testLoadTapsMany},
	{"DeviceTaps", testDeviceTaps},
	{"DenyList", testDenyList},
	{"DenyChangesSince", testDenyChangesSince},
}

// key32 is a device MAC key whose bytes are all b.
func key32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func addDevice(t *testing.T, s store.Store, d store.Device) {
	t.Helper()
	if err := s.AddDevice(ctxT(t), d); err != nil {
		t.Fatalf("AddDevice(%s): %v", d.ID, err)
	}
}

func normDevice(d store.Device) store.Device       { d.CreatedAt = norm(d.CreatedAt); return d }
func normTap(x store.TapRecord) store.TapRecord    { x.At = norm(x.At); return x }
func normDeny(d store.DenyChange) store.DenyChange { d.At = norm(d.At); return d }
func normRider(r store.RiderState) store.RiderState {
	r.UpdatedAt = norm(r.UpdatedAt)
	if len(r.State) == 0 {
		r.State = nil
	}
	return r
}

func normAll[T any](xs []T, f func(T) T) []T {
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func sortTaps(ts []store.TapRecord) {
	slices.SortFunc(ts, func(a, b store.TapRecord) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	})
}

func testDevices(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	bus := store.Device{ID: "BUS-0002", Operator: "M-BUS", Mode: "bus", Route: "12", Key: key32(1),
		Status: store.DeviceActive, CreatedAt: t0}
	metro := store.Device{ID: "MET-0001", Operator: "M-METRO", Mode: "metro", Key: key32(2), LastSeq: 7,
		CreatedAt: t0.Add(time.Hour)} // no status: active
	bus1 := store.Device{ID: "BUS-0001", Operator: "M-BUS", Mode: "bus", Route: "", Key: key32(3),
		Status: store.DeviceRetired, CreatedAt: t0}
	for _, d := range []store.Device{bus, metro, bus1} {
		addDevice(t, s, d)
	}
	metro.Status = store.DeviceActive

	got, err := s.GetDevice(ctx, "MET-0001")
	if err != nil {
		t.Fatal(err)
	}
	checkUTC(t, "device CreatedAt", got.CreatedAt, metro.CreatedAt)
	mustEqual(t, "GetDevice", got, normDevice(metro))

	dup := bus
	dup.Operator = "M-OTHER"
	if err := s.AddDevice(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AddDevice of a taken id: err = %v, want ErrConflict", err)
	}
	for _, tc := range []struct {
		name string
		d    store.Device
		want string
	}{
		{"no id", store.Device{Operator: "M", Mode: "bus", Key: key32(1)}, "id"},
		{"no key", store.Device{ID: "BUS-9", Operator: "M", Mode: "bus"}, "key"},
		{"bad status", store.Device{ID: "BUS-9", Operator: "M", Mode: "bus", Key: key32(1), Status: "lost"}, "status"},
	} {
		if err := s.AddDevice(ctx, tc.d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddDevice with %s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	if _, err := s.GetDevice(ctx, "BUS-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDevice(BUS-9) after refused adds: err = %v, want ErrNotFound", err)
	}

	all, err := s.ListDevices(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range all {
		ids = append(ids, d.ID)
		if d.Key != nil {
			t.Errorf("ListDevices lists the key of %s", d.ID)
		}
	}
	mustEqual(t, "ListDevices(\"\") ids", ids, []string{"BUS-0001", "BUS-0002", "MET-0001"})
	wantBus := []store.Device{normDevice(bus1), normDevice(bus)}
	wantBus[0].Key, wantBus[1].Key = nil, nil
	gotBus, err := s.ListDevices(ctx, "M-BUS")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListDevices(M-BUS)", gotBus, wantBus)
	if none, err := s.ListDevices(ctx, "M-NONE"); err != nil || len(none) != 0 {
		t.Errorf("ListDevices(M-NONE) = %v, %v; want none", none, err)
	}

	if err := s.SetDeviceStatus(ctx, "BUS-0002", store.DeviceRetired); err != nil {
		t.Fatal(err)
	}
	if d, err := s.GetDevice(ctx, "BUS-0002"); err != nil || d.Status != store.DeviceRetired {
		t.Errorf("after SetDeviceStatus: %+v, %v", d, err)
	}
	if err := s.SetDeviceStatus(ctx, "BUS-0002", "broken"); err == nil {
		t.Error("SetDeviceStatus(broken) succeeded")
	}
	if err := s.SetDeviceStatus(ctx, "NOPE", store.DeviceActive); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetDeviceStatus(NOPE): err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetDevice(ctx, "NOPE"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDevice(NOPE): err = %v, want ErrNotFound", err)
	}

	loaded, err := s.LoadDevices(ctx, []string{"MET-0001", "NOPE", "BUS-0001"})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(loaded, func(i, j int) bool { return loaded[i].ID < loaded[j].ID })
	mustEqual(t, "LoadDevices", loaded, []store.Device{normDevice(bus1), normDevice(metro)})
	if got, err := s.LoadDevices(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadDevices(nil) = %v, %v", got, err)
	}
}

// transitDevices registers the devices the batch cases post taps from.
func transitDevices(t *testing.T, s store.Store) {
	addDevice(t, s, store.Device{ID: "BUS-0001", Operator: "M-BUS", Mode: "bus", Route: "12", Key: key32(1), CreatedAt: t0})
	addDevice(t, s, store.Device{ID: "MET-0001", Operator: "M-METRO", Mode: "metro", Key: key32(2), CreatedAt: t0})
}

// withTransit adds to b (the failing batch of seed's ledger) taps from
// BUS-0001 seqs 1-3 and MET-0001 seq 1, deny changes from version
// firstDeny, rider states of both cards and the devices' sequence numbers.
func withTransit(b *store.Batch, firstDeny int64) *store.Batch {
	b.Taps = []store.TapRecord{
		{Device: "BUS-0001", Seq: 1, Card: card1, At: t0, Kind: "board", Route: "12", Stop: "S1", Status: store.TapCharged,
			Fare: 200, Balance: 4800, Transfer: 14, Batch: b.Record.Seq},
		// Text COPY must escape these.
		{Device: "BUS-0001", Seq: 2, Card: card2, At: t0.Add(time.Second), Kind: "board", Route: "12",
			Stop: "tab\there\nnew \\N line\r 站", Offline: true, Status: store.TapDeclined, Reason: "insufficient_funds",
			Balance: -50, Batch: b.Record.Seq},
		{Device: "BUS-0001", Seq: 3, Card: "6222000000000000", At: t0.Add(2 * time.Second), Status: store.TapRefused,
			Reason: "bad_mac", Batch: b.Record.Seq},
		{Device: "MET-0001", Seq: 1, Card: card1, At: t0.Add(time.Minute), Kind: "entry", Stop: "Central",
			Status: store.TapCharged, Fare: 300, Balance: 4500, Transfer: 14, Batch: b.Record.Seq},
	}
	b.DenyChanges = []store.DenyChange{
		{Version: firstDeny, Card: card2, Add: true, Reason: "debt", At: t0},
		{Version: firstDeny + 1, Card: "3100010000000047", Add: true, Reason: "lost", At: t0.Add(time.Second)},
	}
	b.RiderStates = []store.RiderState{
		{Card: card1, State: []byte(`{"rides":2,"spent":500}`), UpdatedAt: t0.Add(time.Minute)},
		{Card: card2, UpdatedAt: t0}, // empty state reads back nil
	}
	b.DeviceSeqs = []store.DeviceSeq{{Device: "BUS-0001", LastSeq: 2}, {Device: "MET-0001", LastSeq: 1},
		{Device: "BUS-0001", LastSeq: 3}} // listed twice: the highest wins
	return b
}

// transitState is everything of the transit tables a test looks at.
type transitState struct {
	Head    store.Head
	Devices []store.Device
	Taps    []store.TapRecord
	Deny    []store.DenyChange
	Riders  []store.RiderState
}

func takeTransit(t *testing.T, s store.Store) transitState {
	t.Helper()
	ctx := ctxT(t)
	var (
		st  transitState
		err error
	)
	if st.Head, err = s.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Devices, err = s.LoadDevices(ctx, []string{"BUS-0001", "MET-0001"}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(st.Devices, func(i, j int) bool { return st.Devices[i].ID < st.Devices[j].ID })
	for _, d := range []string{"BUS-0001", "MET-0001"} {
		taps, err := s.DeviceTaps(ctx, d, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		st.Taps = append(st.Taps, taps...)
	}
	if st.Deny, err = s.DenyChangesSince(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st.Riders, err = s.LoadRiderStates(ctx, []string{card1, card2}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(st.Riders, func(i, j int) bool { return st.Riders[i].Card < st.Riders[j].Card })
	return st
}

func testTransitBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	transitDevices(t, s)
	b1 := seed()
	commit(t, s, b1)
	b2 := withTransit(failing(b1), 1)
	commit(t, s, b2)

	st := takeTransit(t, s)
	wantTaps := normAll(b2.Taps, normTap)
	mustEqual(t, "taps after commit", st.Taps, wantTaps)
	checkUTC(t, "tap At", st.Taps[0].At, b2.Taps[0].At)
	mustEqual(t, "deny changes after commit", st.Deny, normAll(b2.DenyChanges, normDeny))
	mustEqual(t, "rider states after commit", st.Riders, normAll(b2.RiderStates, normRider))
	if st.Riders[1].State != nil {
		t.Errorf("empty rider state reads back %q, want nil", st.Riders[1].State)
	}
	if len(st.Devices) != 2 || st.Devices[0].LastSeq != 3 || st.Devices[1].LastSeq != 1 {
		t.Fatalf("devices after commit = %+v, want last seqs 3 and 1", st.Devices)
	}
	if st.Head.DenyVersion != 2 || st.Head.LastBatch != 2 || st.Head.LastTransfer != 14 {
		t.Errorf("head after transit batch = %+v", st.Head)
	}
	// The ledger's own rows are written alongside and counted as before.
	if tr, err := s.GetTransfer(ctx, 14); err != nil || tr.Amount != 100 {
		t.Errorf("transfer 14 = %+v, %v", tr, err)
	}
	counts, err := s.CountRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := counts["taps"]; ok || counts["transfers"] != 5 || counts["batches"] != 2 {
		t.Errorf("CountRows = %v, want the ledger tables only", counts)
	}

	// A later batch: last_seq never goes back, rider states are replaced,
	// a batch of transit rows alone commits.
	b3 := &store.Batch{
		Record: store.BatchRecord{Seq: 3, PrevHash: []byte("hash-2"), Hash: []byte("hash-3"), At: t0},
		Taps: []store.TapRecord{{Device: "BUS-0001", Seq: 5, Card: card1, At: t0.Add(time.Hour),
			Status: store.TapCharged, Fare: 200, Balance: 4300, Batch: 3}},
		DenyChanges: []store.DenyChange{{Version: 3, Card: card2, Reason: "debt paid", At: t0.Add(time.Hour)}},
		RiderStates: []store.RiderState{{Card: card1, State: []byte(`{"rides":3}`), UpdatedAt: t0.Add(time.Hour)}},
		DeviceSeqs:  []store.DeviceSeq{{Device: "BUS-0001", LastSeq: 5}, {Device: "MET-0001", LastSeq: 0}},
	}
	commit(t, s, b3)
	st = takeTransit(t, s)
	if st.Devices[0].LastSeq != 5 || st.Devices[1].LastSeq != 1 {
		t.Errorf("last seqs after batch 3 = %d, %d; want 5, 1", st.Devices[0].LastSeq, st.Devices[1].LastSeq)
	}
	if string(st.Riders[0].State) != `{"rides":3}` || !st.Riders[0].UpdatedAt.Equal(norm(t0.Add(time.Hour))) {
		t.Errorf("rider state of %s after upsert = %+v", card1, st.Riders[0])
	}
	if len(st.Taps) != 5 || st.Head.DenyVersion != 3 || len(st.Deny) != 3 || st.Deny[2].Add {
		t.Errorf("after batch 3: %d taps, deny version %d, changes %+v", len(st.Taps), st.Head.DenyVersion, st.Deny)
	}
}

func testTransitRollback(t *testing.T, s store.Store) {
	transitDevices(t, s)
	b1 := seed()
	commit(t, s, b1)
	// The stored transit rows the failing batches collide with.
	commit(t, s, &store.Batch{
		Record: store.BatchRecord{Seq: 2, PrevHash: []byte("hash-1"), Hash: []byte("hash-2"), At: t0},
		Taps: []store.TapRecord{{Device: "MET-0001", Seq: 1, Card: card1, At: t0, Status: store.TapCharged,
			Fare: 300, Balance: 100, Batch: 2}},
		DenyChanges: []store.DenyChange{{Version: 1, Card: card1, Add: true, Reason: "lost", At: t0}},
		RiderStates: []store.RiderState{{Card: card1, State: []byte(`{"rides":1}`), UpdatedAt: t0}},
		DeviceSeqs:  []store.DeviceSeq{{Device: "MET-0001", LastSeq: 1}},
	})
	// failing makes batch 2; these are batch 3.
	next := func(firstDeny int64) *store.Batch {
		b := withTransit(failing(b1), firstDeny)
		b.Record.Seq, b.Record.PrevHash, b.Record.Hash = 3, []byte("hash-2"), []byte("hash-3")
		b.Transfers[0].Batch = 3
		// MET-0001 seq 1 is stored; the others are new.
		b.Taps = slices.DeleteFunc(b.Taps, func(x store.TapRecord) bool { return x.Device == "MET-0001" })
		return b
	}
	for _, tc := range []struct {
		name  string
		batch func() *store.Batch
		is    error
	}{
		{"tap already stored", func() *store.Batch {
			b := next(2)
			b.Taps = append(b.Taps, store.TapRecord{Device: "MET-0001", Seq: 1, Card: card2, At: t0,
				Status: store.TapCharged, Batch: 3})
			return b
		}, store.ErrConflict},
		{"deny version stored", func() *store.Batch { return next(1) }, store.ErrConflict},
		{"deny version gap", func() *store.Batch { return next(3) }, store.ErrConflict},
		{"unknown device seq", func() *store.Batch {
			b := next(2)
			b.DeviceSeqs = append(b.DeviceSeqs, store.DeviceSeq{Device: "BUS-9999", LastSeq: 1})
			return b
		}, store.ErrNotFound},
		{"ledger row fails", func() *store.Batch {
			b := next(2)
			b.Idempotency = append(b.Idempotency, b1.Idempotency[0])
			return b
		}, store.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := takeTransit(t, s)
			err := checkRolledBack(t, s, tc.batch())
			if !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			mustEqual(t, "transit state after failed batch", takeTransit(t, s), before)
		})
	}
	// Repaired, the same batch commits whole.
	commit(t, s, next(2))
	st := takeTransit(t, s)
	if len(st.Taps) != 4 || st.Head.DenyVersion != 3 || st.Devices[0].LastSeq != 3 || st.Head.LastBatch != 3 {
		t.Errorf("after the repaired batch: %+v", st)
	}
}

func testTransitCheck(t *testing.T, s store.Store) {
	tap := func(dev string, seq int64) store.TapRecord {
		return store.TapRecord{Device: dev, Seq: seq, Card: card1, At: t0, Status: store.TapCharged, Batch: 1}
	}
	deny := func(v ...int64) []store.DenyChange {
		var out []store.DenyChange
		for _, x := range v {
			out = append(out, store.DenyChange{Version: x, Card: card1, Add: true, At: t0})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		b     store.Batch
		wants string // "" when Check passes
	}{
		{"distinct taps", store.Batch{Taps: []store.TapRecord{tap("A", 1), tap("A", 2), tap("B", 1)}}, ""},
		{"tap twice", store.Batch{Taps: []store.TapRecord{tap("A", 1), tap("B", 1), tap("A", 1)}}, "tap A/1"},
		{"rider states of two cards", store.Batch{RiderStates: []store.RiderState{{Card: card1}, {Card: card2}}}, ""},
		{"rider state twice", store.Batch{RiderStates: []store.RiderState{{Card: card1}, {Card: card1}}}, "rider state"},
		{"consecutive deny versions", store.Batch{DenyChanges: deny(4, 5, 6)}, ""},
		{"deny version gap", store.Batch{DenyChanges: deny(1, 3)}, "deny change version 3"},
		{"deny version repeated", store.Batch{DenyChanges: deny(1, 2, 2)}, "deny change version 2"},
		{"deny versions descending", store.Batch{DenyChanges: deny(2, 1)}, "deny change version 1"},
		{"deny version zero", store.Batch{DenyChanges: deny(0)}, "deny change version 0"},
		{"device seqs repeated", store.Batch{DeviceSeqs: []store.DeviceSeq{{Device: "A", LastSeq: 1}, {Device: "A", LastSeq: 2}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.b.Check()
			switch {
			case tc.wants == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wants != "" && (err == nil || !strings.Contains(err.Error(), tc.wants)):
				t.Fatalf("Check: err = %v, want one naming %q", err, tc.wants)
			case tc.wants == "":
				return
			}
			// The store refuses it too, and writes nothing.
			b := tc.b
			b.Record = store.BatchRecord{Seq: 1, Hash: []byte("hash-1"), At: t0}
			if err := s.CommitBatch(ctxT(t), &b); err == nil {
				t.Fatal("CommitBatch of a batch Check refuses succeeded")
			}
			if h, err := s.Head(ctxT(t)); err != nil || h.LastBatch != 0 || h.DenyVersion != 0 {
				t.Fatalf("head after refused batch = %+v, %v", h, err)
			}
		})
	}
}

func testLoadTapsMany(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const devices, perDevice = 20, 60 // 1,200 taps
	b := &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}, At: t0}}
	var want []store.TapRecord
	var keys []store.TapKey
	for d := range devices {
		dev := fmt.Sprintf("BUS-%04d", d)
		for q := range perDevice {
			x := store.TapRecord{Device: dev, Seq: int64(q + 1), Card: fmt.Sprintf("%016d", d*1000+q), At: t0,
				Status: store.TapCharged, Fare: int64(q), Balance: int64(d), Transfer: int64(d*perDevice + q + 1), Batch: 1}
			b.Taps = append(b.Taps, x)
			if len(keys) < 700 && q%6 != 0 {
				want = append(want, normTap(x))
				keys = append(keys, store.TapKey{Device: dev, Seq: x.Seq})
			}
		}
	}
	commit(t, s, b)
	// 1,000 keys: the present ones interleaved with missing ones (an unknown
	// device, and seqs a known device never sent), one asked for twice.
	ask := slices.Clone(keys)
	for i := 0; len(ask) < 999; i++ {
		k := store.TapKey{Device: "BUS-0003", Seq: int64(1000 + i)}
		if i%2 == 0 {
			k.Device = "MET-9999"
		}
		ask = slices.Insert(ask, (i*7)%len(ask), k)
	}
	ask = append(ask, keys[0])
	if len(ask) != 1000 {
		t.Fatalf("asking for %d keys, want 1000", len(ask))
	}
	start := time.Now()
	got, err := s.LoadTaps(ctx, ask)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LoadTaps of %d keys (%d present): %v", len(ask), len(keys), took)
	if len(got) != len(want) {
		t.Fatalf("LoadTaps returned %d taps, want %d", len(got), len(want))
	}
	sortTaps(got)
	sortTaps(want)
	mustEqual(t, "LoadTaps", got, want)
	if got, err := s.LoadTaps(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadTaps(nil) = %v, %v", got, err)
	}
	if got, err := s.LoadRiderStates(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadRiderStates(nil) = %v, %v", got, err)
	}
}

func testDeviceTaps(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}, At: t0}}
	// Seqs with a gap, inserted out of order, and a neighbouring device
	// whose id sorts on either side.
	for _, seq := range []int64{5, 1, 2, 3, 7, 8, 10} {
		b.Taps = append(b.Taps, store.TapRecord{Device: "BUS-0001", Seq: seq, Card: card1, At: t0.Add(time.Duration(seq) * time.Second),
			Status: store.TapCharged, Batch: 1})
	}
	for _, dev := range []string{"BUS-0000", "BUS-00010", "BUS-0002"} {
		b.Taps = append(b.Taps, store.TapRecord{Device: dev, Seq: 4, Card: card2, At: t0, Status: store.TapRefused, Batch: 1})
	}
	commit(t, s, b)
	seqs := func(after int64, limit int) []int64 {
		t.Helper()
		taps, err := s.DeviceTaps(ctx, "BUS-0001", after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, x := range taps {
			if x.Device != "BUS-0001" {
				t.Fatalf("DeviceTaps(BUS-0001) returned a tap of %s", x.Device)
			}
			out = append(out, x.Seq)
		}
		return out
	}
	mustEqual(t, "all", seqs(0, 0), []int64{1, 2, 3, 5, 7, 8, 10})
	mustEqual(t, "after 0 limit 3", seqs(0, 3), []int64{1, 2, 3})
	mustEqual(t, "after 3 limit 3", seqs(3, 3), []int64{5, 7, 8})
	mustEqual(t, "after 8 limit 3", seqs(8, 3), []int64{10})
	mustEqual(t, "after 10", seqs(10, 3), []int64(nil))
	mustEqual(t, "after 4 no limit", seqs(4, -1), []int64{5, 7, 8, 10})
	if got, err := s.DeviceTaps(ctx, "NOPE", 0, 0); err != nil || len(got) != 0 {
		t.Errorf("DeviceTaps(NOPE) = %v, %v", got, err)
	}
}

func testDenyList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const a, b, c, d = "3100010000000005", "3100010000000013", "3100010000000021", "3100010000000039"
	v, list, err := s.DenyList(ctx)
	if err != nil || v != 0 || len(list) != 0 {
		t.Fatalf("empty DenyList = %d, %v, %v", v, list, err)
	}
	changes := []store.DenyChange{
		{Version: 1, Card: c, Add: true, Reason: "lost", At: t0},
		{Version: 2, Card: a, Add: true, Reason: "debt", At: t0.Add(1 * time.Second)},
		{Version: 3, Card: b, Add: true, Reason: "frozen", At: t0.Add(2 * time.Second)},
		{Version: 4, Card: c, Reason: "found", At: t0.Add(3 * time.Second)},                 // removed
		{Version: 5, Card: a, Reason: "debt paid", At: t0.Add(4 * time.Second)},             // removed…
		{Version: 6, Card: a, Add: true, Reason: "debt again", At: t0.Add(5 * time.Second)}, // …and added again
		{Version: 7, Card: d, Reason: "never listed", At: t0.Add(6 * time.Second)},          // removed, never added
	}
	// Over three batches, so the list spans commits.
	for i, part := range [][]store.DenyChange{changes[:2], changes[2:5], changes[5:]} {
		seq := int64(i + 1)
		commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: seq, Hash: []byte{byte(seq)}, At: t0}, DenyChanges: part})
	}
	v, list, err = s.DenyList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != 7 {
		t.Errorf("DenyList version = %d, want 7", v)
	}
	mustEqual(t, "DenyList", list, []store.DenyChange{normDeny(changes[5]), normDeny(changes[2])})
	if h, err := s.Head(ctx); err != nil || h.DenyVersion != 7 {
		t.Errorf("Head.DenyVersion = %d, %v; want 7", h.DenyVersion, err)
	}

	// Taking b off and putting c back on changes the list accordingly.
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 4, Hash: []byte{4}, At: t0}, DenyChanges: []store.DenyChange{
		{Version: 8, Card: b, Reason: "unfrozen", At: t0}, {Version: 9, Card: c, Add: true, Reason: "lost", At: t0}}})
	v, list, err = s.DenyList(ctx)
	if err != nil || v != 9 || len(list) != 2 || list[0].Card != a || list[1].Card != c || list[1].Version != 9 {
		t.Errorf("DenyList after batch 4 = %d, %+v, %v", v, list, err)
	}
}

func testDenyChangesSince(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var all []store.DenyChange
	for batch := int64(1); batch <= 5; batch++ {
		b := &store.Batch{Record: store.BatchRecord{Seq: batch, Hash: []byte{byte(batch)}, At: t0}}
		for range 5 {
			v := int64(len(all) + 1)
			ch := store.DenyChange{Version: v, Card: fmt.Sprintf("%016d", v%7), Add: v%3 != 0, Reason: "r", At: t0.Add(time.Duration(v) * time.Millisecond)}
			b.DenyChanges = append(b.DenyChanges, ch)
			all = append(all, normDeny(ch))
		}
		commit(t, s, b)
	}
	var paged []store.DenyChange
	since := int64(0)
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		page, err := s.DenyChangesSince(ctx, since, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 10 {
			t.Fatalf("page of %d, want at most 10", len(page))
		}
		paged = append(paged, page...)
		since = page[len(page)-1].Version
	}
	mustEqual(t, "paged changes", paged, all)
	for _, tc := range []struct {
		since int64
		limit int
		want  []store.DenyChange
	}{
		{0, 0, all}, {0, -1, all}, {20, 0, all[20:]}, {24, 10, all[24:]}, {25, 10, nil}, {99, 0, nil}, {-5, 2, all[:2]},
	} {
		got, err := s.DenyChangesSince(ctx, tc.since, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, fmt.Sprintf("DenyChangesSince(%d, %d)", tc.since, tc.limit), got, tc.want)
	}
}
