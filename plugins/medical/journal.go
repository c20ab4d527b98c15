package medical

import (
	"sync"
)

// journal remembers, in memory, what the plugin did for each bill, so a
// bill posted again or a message delivered again repeats nothing at the
// insurer. It is lost on a restart; then the insurer's own rules take
// over: registering a bill number again returns its visit, and a visit
// with a live settlement answers that settlement to another 2207.
type journal struct {
	mu       sync.Mutex
	bills    map[string]*billEntry // hospital:bill_id
	settles  map[string]*opEntry   // bill_key
	reverses map[string]*opEntry   // bill_key
}

func newJournal() *journal {
	return &journal{bills: map[string]*billEntry{}, settles: map[string]*opEntry{}, reverses: map[string]*opEntry{}}
}

// billEntry is a bill's progress at the insurer. Its mutex serialises
// postings of the same bill.
type billEntry struct {
	mu          sync.Mutex
	fingerprint string // of the first request: a different one is a conflict
	person      *person
	mdtrtID     string
	uploaded    bool
	pre         *Split
}

type person struct {
	psnNo   string
	insured bool
}

// opEntry is a settlement's or reversal's progress: the answer once
// final, and the requests whose outcome is unknown until corrected.
type opEntry struct {
	mu      sync.Mutex
	answer  any
	pending []string // msgids to correct before anything else
}

func (j *journal) bill(key string) *billEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.bills[key]
	if e == nil {
		e = &billEntry{}
		j.bills[key] = e
	}
	return e
}

func (j *journal) op(m map[string]*opEntry, key string) *opEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := m[key]
	if e == nil {
		e = &opEntry{}
		m[key] = e
	}
	return e
}
