package ledger

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// The transit state the writer keeps beside the ledger: taps already
// posted (so a tap is posted once even while the batch holding it is still
// being committed), the fare engine's state per card, transit devices with
// the highest sequence number seen, and the deny list, whose current set is
// held whole in memory (a city's list is some 100,000 cards at most).
type transitState struct {
	taps    map[store.TapKey]*store.TapRecord
	riders  map[string][]byte // nil value: loaded, none stored
	devices map[string]*store.Device
	deny    map[string]store.DenyChange // the cards on the list, by number
}

// transitPending is the transit part of the batch being built.
type transitPending struct {
	taps    []store.TapRecord
	deny    []store.DenyChange
	riders  map[string]bool
	devices map[string]bool
}

// transitUndo is what an op changed of the transit state, to undo it.
type transitUndo struct {
	taps       []store.TapKey
	riderSnap  map[string][]byte
	riderHad   map[string]bool
	addRiders  []string
	devSnap    map[string]int64
	addDevices []string
	denySnap   map[string]*store.DenyChange // nil: the card was not on the list
	denyMark   int
	denyHead   int64
}

func (e *Engine) resetTransit(ctx context.Context) error {
	_, cards, err := e.st.DenyList(ctx)
	if err != nil {
		return err
	}
	e.tr = transitState{
		taps:    map[store.TapKey]*store.TapRecord{},
		riders:  map[string][]byte{},
		devices: map[string]*store.Device{},
		deny:    make(map[string]store.DenyChange, len(cards)),
	}
	for _, c := range cards {
		e.tr.deny[c.Card] = c
	}
	return nil
}

// prefetchTransit loads the taps, rider states and devices k names that
// are not cached.
func (e *Engine) prefetchTransit(ctx context.Context, k *Keys) error {
	var taps []store.TapKey
	for _, t := range k.Taps {
		if _, ok := e.tr.taps[t]; !ok {
			taps = append(taps, t)
		}
	}
	if len(taps) > 0 {
		recs, err := e.st.LoadTaps(ctx, taps)
		if err != nil {
			return err
		}
		for i := range recs {
			r := recs[i]
			e.tr.taps[store.TapKey{Device: r.Device, Seq: r.Seq}] = &r
		}
	}
	var riders []string
	for _, c := range dedupe(k.Riders) {
		if _, ok := e.tr.riders[c]; !ok {
			riders = append(riders, c)
		}
	}
	if len(riders) > 0 {
		states, err := e.st.LoadRiderStates(ctx, riders)
		if err != nil {
			return err
		}
		for _, c := range riders {
			e.tr.riders[c] = nil
		}
		for _, s := range states {
			e.tr.riders[s.Card] = s.State
		}
	}
	var devices []string
	for _, d := range dedupe(k.Devices) {
		if _, ok := e.tr.devices[d]; !ok {
			devices = append(devices, d)
		}
	}
	if len(devices) > 0 {
		ds, err := e.st.LoadDevices(ctx, devices)
		if err != nil {
			return err
		}
		for i := range ds {
			d := ds[i]
			e.tr.devices[d.ID] = &d
		}
	}
	return nil
}

// buildTransit puts the transit part of p into b.
func (e *Engine) buildTransit(p *pending, b *store.Batch, now time.Time) {
	b.Taps = p.tr.taps
	b.DenyChanges = p.tr.deny
	for c := range p.tr.riders {
		b.RiderStates = append(b.RiderStates, store.RiderState{Card: c, State: e.tr.riders[c], UpdatedAt: now})
	}
	slices.SortFunc(b.RiderStates, func(x, y store.RiderState) int { return strings.Compare(x.Card, y.Card) })
	for d := range p.tr.devices {
		if dev := e.tr.devices[d]; dev != nil {
			b.DeviceSeqs = append(b.DeviceSeqs, store.DeviceSeq{Device: d, LastSeq: dev.LastSeq})
		}
	}
}

func (p *transitPending) empty() bool {
	return len(p.taps) == 0 && len(p.deny) == 0 && len(p.riders) == 0 && len(p.devices) == 0
}

// Tap returns the tap (device, seq) as posted before, and false if it has
// not been; the op must name it in Keys.Taps.
func (tx *Tx) Tap(k store.TapKey) (store.TapRecord, bool) {
	r := tx.e.tr.taps[k]
	if r == nil {
		return store.TapRecord{}, false
	}
	return *r, true
}

// PutTap records a tap's outcome; it is written with the batch. A tap
// already recorded is an error of the op, not of the tap.
func (tx *Tx) PutTap(r store.TapRecord) {
	k := store.TapKey{Device: r.Device, Seq: r.Seq}
	if _, dup := tx.e.tr.taps[k]; dup {
		panic("ledger: tap " + r.Device + "/" + strconv.FormatInt(r.Seq, 10) + " recorded twice")
	}
	rr := r
	tx.e.tr.taps[k] = &rr
	tx.b.tr.taps = append(tx.b.tr.taps, r)
	tx.tu.taps = append(tx.tu.taps, k)
}

// RiderState returns the fare engine's state of card (nil when none); the
// op must name the card in Keys.Riders.
func (tx *Tx) RiderState(card string) []byte { return tx.e.tr.riders[card] }

// PutRiderState stores the fare engine's new state of card.
func (tx *Tx) PutRiderState(card string, state []byte) {
	old, had := tx.e.tr.riders[card]
	if tx.tu.riderSnap == nil {
		tx.tu.riderSnap, tx.tu.riderHad = map[string][]byte{}, map[string]bool{}
	}
	if _, saved := tx.tu.riderSnap[card]; !saved {
		tx.tu.riderSnap[card], tx.tu.riderHad[card] = old, had
	}
	tx.e.tr.riders[card] = state
	if !tx.b.tr.riders[card] {
		tx.b.tr.riders[card] = true
		tx.tu.addRiders = append(tx.tu.addRiders, card)
	}
}

// Device returns the transit device id, and false if it is not
// registered; the op must name it in Keys.Devices.
func (tx *Tx) Device(id string) (store.Device, bool) {
	d := tx.e.tr.devices[id]
	if d == nil {
		return store.Device{}, false
	}
	return *d, true
}

// SawSeq raises device id's highest sequence number seen to seq.
func (tx *Tx) SawSeq(id string, seq int64) {
	d := tx.e.tr.devices[id]
	if d == nil || seq <= d.LastSeq {
		return
	}
	if tx.tu.devSnap == nil {
		tx.tu.devSnap = map[string]int64{}
	}
	if _, saved := tx.tu.devSnap[id]; !saved {
		tx.tu.devSnap[id] = d.LastSeq
	}
	d.LastSeq = seq
	if !tx.b.tr.devices[id] {
		tx.b.tr.devices[id] = true
		tx.tu.addDevices = append(tx.tu.addDevices, id)
	}
}

// Denied returns why card is on the deny list, and false if it is not.
func (tx *Tx) Denied(card string) (store.DenyChange, bool) {
	c, ok := tx.e.tr.deny[card]
	return c, ok
}

// DenyVersion is the deny list's version, counting this batch's changes so
// far.
func (tx *Tx) DenyVersion() int64 { return tx.e.head.DenyVersion }

// Deny puts card on the deny list for reason, or changes the reason it is
// there for; it does nothing if the card is there for that reason already.
func (tx *Tx) Deny(card, reason string) {
	if c, ok := tx.e.tr.deny[card]; ok && c.Reason == reason {
		return
	}
	tx.denyChange(store.DenyChange{Card: card, Add: true, Reason: reason})
}

// Allow takes card off the deny list, saying why; it does nothing if the
// card is not on it.
func (tx *Tx) Allow(card, reason string) {
	if _, ok := tx.e.tr.deny[card]; !ok {
		return
	}
	tx.denyChange(store.DenyChange{Card: card, Add: false, Reason: reason})
}

func (tx *Tx) denyChange(c store.DenyChange) {
	e := tx.e
	if tx.tu.denySnap == nil {
		tx.tu.denySnap = map[string]*store.DenyChange{}
		tx.tu.denyMark = len(tx.b.tr.deny)
		tx.tu.denyHead = e.head.DenyVersion
	}
	if _, saved := tx.tu.denySnap[c.Card]; !saved {
		if old, ok := e.tr.deny[c.Card]; ok {
			tx.tu.denySnap[c.Card] = &old
		} else {
			tx.tu.denySnap[c.Card] = nil
		}
	}
	e.head.DenyVersion++
	c.Version, c.At = e.head.DenyVersion, tx.now
	if c.Add {
		e.tr.deny[c.Card] = c
	} else {
		delete(e.tr.deny, c.Card)
	}
	tx.b.tr.deny = append(tx.b.tr.deny, c)
}

// rollbackTransit undoes the op's transit changes.
func (tx *Tx) rollbackTransit() {
	e, u := tx.e, &tx.tu
	for _, k := range u.taps {
		delete(e.tr.taps, k)
	}
	if n := len(u.taps); n > 0 {
		tx.b.tr.taps = tx.b.tr.taps[:len(tx.b.tr.taps)-n]
	}
	for c, s := range u.riderSnap {
		if u.riderHad[c] {
			e.tr.riders[c] = s
		} else {
			delete(e.tr.riders, c)
		}
	}
	for _, c := range u.addRiders {
		delete(tx.b.tr.riders, c)
	}
	for id, seq := range u.devSnap {
		if d := e.tr.devices[id]; d != nil {
			d.LastSeq = seq
		}
	}
	for _, id := range u.addDevices {
		delete(tx.b.tr.devices, id)
	}
	if u.denySnap != nil {
		for card, old := range u.denySnap {
			if old == nil {
				delete(e.tr.deny, card)
			} else {
				e.tr.deny[card] = *old
			}
		}
		tx.b.tr.deny = tx.b.tr.deny[:u.denyMark]
		e.head.DenyVersion = u.denyHead
	}
}
