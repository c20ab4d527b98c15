package transit

import (
	"encoding/json"
	"slices"
	"sync"
)

// denylist is the deny list the plugin serves validators: the hub's list at
// one version, and what changed in the versions before it, so a validator
// that is a few versions behind downloads only the change.
type denylist struct {
	mu      sync.RWMutex
	loaded  bool
	version int64
	cards   map[string]struct{}
	history []change // oldest first; history[i].to == history[i+1].from
	touched int      // cards in history, to bound it
	full    []byte   // the full download at version, made on first request
	changed chan struct{}
}

// change is one step of the hub's list: the cards added or removed between
// two versions.
type change struct {
	from, to int64
	cards    []string
}

// History bounds: past them, the oldest steps are forgotten and a validator
// that far behind downloads the full list.
const (
	maxHistory = 256
	maxTouched = 200_000
)

func newDenylist() *denylist {
	return &denylist{cards: map[string]struct{}{}, changed: make(chan struct{})}
}

// state returns the version, size and whether a list was ever loaded.
func (d *denylist) state() (version int64, size int, loaded bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.version, len(d.cards), d.loaded
}

// wait returns a channel closed at the next change.
func (d *denylist) wait() <-chan struct{} {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.changed
}

// replace installs a full list at version, remembering what changed since
// the list held. A version below the one held means the hub's list was
// reset (restored from a backup, say): the plugin follows the hub, and a
// validator ahead of it gets the full list.
func (d *denylist) replace(version int64, cards []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded && version == d.version {
		return false
	}
	if version < d.version {
		d.history, d.touched = nil, 0
		d.loaded = false
	}
	set := make(map[string]struct{}, len(cards))
	for _, c := range cards {
		set[c] = struct{}{}
	}
	var diff []string
	if d.loaded {
		for c := range set {
			if _, ok := d.cards[c]; !ok {
				diff = append(diff, c)
			}
		}
		for c := range d.cards {
			if _, ok := set[c]; !ok {
				diff = append(diff, c)
			}
		}
		d.remember(change{from: d.version, to: version, cards: diff})
	}
	d.cards, d.version, d.loaded = set, version, true
	d.announce()
	return true
}

// apply applies the hub's change from version since to version. It
// returns false, changing nothing, when since is not the version held.
func (d *denylist) apply(since, version int64, add, remove []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded || since != d.version || version < since {
		return false
	}
	if version == since {
		return true
	}
	touched := make([]string, 0, len(add)+len(remove))
	for _, c := range remove {
		delete(d.cards, c)
		touched = append(touched, c)
	}
	for _, c := range add {
		d.cards[c] = struct{}{}
		touched = append(touched, c)
	}
	d.remember(change{from: since, to: version, cards: touched})
	d.version = version
	d.announce()
	return true
}

func (d *denylist) remember(c change) {
	d.history = append(d.history, c)
	d.touched += len(c.cards)
	for len(d.history) > maxHistory || d.touched > maxTouched {
		d.touched -= len(d.history[0].cards)
		d.history = d.history[1:]
	}
}

// announce wakes the long polls; d.mu is held.
func (d *denylist) announce() {
	d.full = nil
	close(d.changed)
	d.changed = make(chan struct{})
}

// delta is a validator's incremental download; fullList its full one.
type (
	delta struct {
		Version int64    `json:"version"`
		Since   int64    `json:"since"`
		Add     []string `json:"add"`
		Remove  []string `json:"remove"`
	}
	fullList struct {
		Version int64    `json:"version"`
		Full    bool     `json:"full"`
		Cards   []string `json:"cards"`
	}
)

// since answers a validator at version v (v < 0: none): incremental when
// the plugin knows every step from v and the change is smaller than the
// list, else the full list, returned already encoded as it is large and the
// same for everyone.
func (d *denylist) since(v int64) (*delta, []byte) {
	if dl := d.delta(v); dl != nil {
		return dl, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.full == nil {
		cards := make([]string, 0, len(d.cards))
		for c := range d.cards {
			cards = append(cards, c)
		}
		slices.Sort(cards)
		body, err := json.Marshal(fullList{Version: d.version, Full: true, Cards: cards})
		if err != nil {
			// Strings and integers always marshal.
			panic("transit: encoding the deny list: " + err.Error())
		}
		d.full = append(body, '\n')
	}
	return nil, d.full
}

func (d *denylist) delta(v int64) *delta {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if v < 0 || v > d.version {
		return nil
	}
	dl := &delta{Version: d.version, Since: v, Add: []string{}, Remove: []string{}}
	if v == d.version {
		return dl
	}
	i := slices.IndexFunc(d.history, func(c change) bool { return c.from == v })
	if i < 0 {
		return nil
	}
	// A card touched since v is on the list now or not: each is an add or
	// a remove, whatever happened to it in between.
	seen := map[string]struct{}{}
	for _, c := range d.history[i:] {
		for _, card := range c.cards {
			if _, ok := seen[card]; ok {
				continue
			}
			seen[card] = struct{}{}
			if _, on := d.cards[card]; on {
				dl.Add = append(dl.Add, card)
			} else {
				dl.Remove = append(dl.Remove, card)
			}
		}
	}
	if len(seen) > len(d.cards)/2+16 {
		return nil
	}
	slices.Sort(dl.Add)
	slices.Sort(dl.Remove)
	return dl
}
