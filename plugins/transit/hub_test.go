package transit_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// hubDouble plays the hub's transit service behind a plugintest.FakeHub:
// it knows every device's key and checks every tap's MAC, posts each
// (device, seq) once, answers per tap as the hub does, flags gaps, and
// keeps a versioned deny list that it answers the plugin's queries from.
type hubDouble struct {
	fake *plugintest.FakeHub

	mu       sync.Mutex
	keys     map[string][]byte
	first    map[sim.TapID]transit.TapResult // each (device, seq)'s first result
	charges  map[sim.TapID]int               // fares posted per tap: never more than 1
	balances map[string]int64
	lastSeq  map[string]int64
	messages map[string]int // transit.taps.v1 messages by path, each idempotency key once
	version  int64
	lists    []map[string]bool // the deny list at each version
}

const (
	fare            = 200
	startingBalance = 5000
)

func newHubDouble() *hubDouble {
	d := &hubDouble{fake: plugintest.NewFakeHub(), keys: map[string][]byte{}, first: map[sim.TapID]transit.TapResult{},
		charges: map[sim.TapID]int{}, balances: map[string]int64{}, lastSeq: map[string]int64{}, messages: map[string]int{},
		lists: []map[string]bool{{}}}
	d.fake.RespondWith(d.respond)
	d.publish()
	return d
}

// register issues a device key, as POST /v1/transit/devices does.
func (d *hubDouble) register(_ context.Context, dev sim.Device) ([]byte, error) {
	key := make([]byte, tap.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys[dev.ID] = key
	return key, nil
}

// deny adds and removes cards, making a new version of the deny list.
func (d *hubDouble) deny(add, remove []string) int64 {
	d.mu.Lock()
	next := maps.Clone(d.lists[len(d.lists)-1])
	for _, c := range remove {
		delete(next, c)
	}
	for _, c := range add {
		next[c] = true
	}
	d.lists = append(d.lists, next)
	d.version++
	v := d.version
	d.mu.Unlock()
	d.publish()
	return v
}

// publish answers the plugin's deny list queries for the current version:
// the version, the full list, and the change since every earlier version
// (the full list, marked so, for version 0, as if it were too old).
func (d *hubDouble) publish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.lists[d.version]
	cards := slices.Sorted(maps.Keys(cur))
	full := map[string]any{"version": d.version, "cards": cards}
	d.fake.SetQuery(sdk.QueryDenylistVersion, "", map[string]any{"version": d.version, "size": len(cur)})
	d.fake.SetQuery("denylist", "", full)
	for v := int64(0); v <= d.version; v++ {
		key := "since:" + strconv.FormatInt(v, 10)
		if v == 0 && d.version > 0 {
			d.fake.SetQuery("denylist", key, map[string]any{"version": d.version, "cards": cards, "full": true})
			continue
		}
		old := d.lists[v]
		add, remove := []string{}, []string{}
		for c := range cur {
			if !old[c] {
				add = append(add, c)
			}
		}
		for c := range old {
			if !cur[c] {
				remove = append(remove, c)
			}
		}
		d.fake.SetQuery("denylist", key, map[string]any{"version": d.version, "since": v, "add": add, "remove": remove})
	}
}

func (d *hubDouble) respond(m sdk.Message) (json.RawMessage, error) {
	if m.Type != transit.TypeTaps {
		return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "no service for %s", m.Type)
	}
	if m.IdempotencyKey == "" {
		return nil, sdk.Errorf("idempotency_key_required", "transit.taps.v1 needs an idempotency key")
	}
	var in struct {
		Taps []tap.Tap `json:"taps"`
	}
	if err := json.Unmarshal(m.Payload, &in); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.messages[m.Metadata["transit.path"]]++
	denied := d.lists[d.version]
	out := struct {
		Results []transit.TapResult `json:"results"`
		Gaps    []transit.Gap       `json:"gaps"`
		Version int64               `json:"denylist_version"`
	}{Results: []transit.TapResult{}, Gaps: []transit.Gap{}, Version: d.version}
	for _, t := range in.Taps {
		id := sim.TapID{Device: t.Device, Seq: t.Seq}
		r := transit.TapResult{Device: t.Device, Seq: t.Seq}
		key, known := d.keys[t.Device]
		switch {
		case !known:
			r.Status, r.Reason = transit.StatusRefused, "device_not_found"
		case !tap.Verify(key, t):
			r.Status, r.Reason = transit.StatusRefused, "tap_mac_invalid"
		}
		if r.Status != "" {
			out.Results = append(out.Results, r)
			continue
		}
		if prev, ok := d.first[id]; ok {
			prev.Status = transit.StatusDuplicate
			out.Results = append(out.Results, prev)
			continue
		}
		if last := d.lastSeq[t.Device]; t.Seq > last+1 {
			out.Gaps = append(out.Gaps, transit.Gap{Device: t.Device, From: last + 1, To: t.Seq - 1})
		}
		d.lastSeq[t.Device] = max(d.lastSeq[t.Device], t.Seq)
		bal, ok := d.balances[t.Card]
		if !ok {
			bal = startingBalance
		}
		switch {
		case denied[t.Card]:
			r.Status, r.Reason = transit.StatusDeclined, "card_lost"
		case !t.Offline && bal < fare:
			r.Status, r.Reason = transit.StatusDeclined, "insufficient_funds"
		default:
			// Offline, the first-ride risk: the purse may go below zero.
			bal -= fare
			d.balances[t.Card] = bal
			d.charges[id]++
			f := int64(fare)
			r.Status, r.Fare, r.Transfer = transit.StatusCharged, &f, fmt.Sprintf("T%d", len(d.first)+1)
		}
		b := bal
		r.Balance = &b
		d.first[id] = r
		out.Results = append(out.Results, r)
	}
	return json.Marshal(out)
}

// answered returns every tap the hub has a result for, and the taps whose
// fare was posted more than once.
func (d *hubDouble) answered() (map[sim.TapID]transit.TapResult, []sim.TapID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var twice []sim.TapID
	for id, n := range d.charges {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	return maps.Clone(d.first), twice
}

// count returns the transit.taps.v1 messages the hub applied on path.
func (d *hubDouble) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.messages[path]
}

func (d *hubDouble) balance(card string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.balances[card]; ok {
		return b
	}
	return startingBalance
}
