package pos

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// journal is the plugin's record of every terminal: its session keys, the
// batches it works in and each transaction of them by STAN. It is how a
// resent request gets its first answer, how a void or refund finds its
// original, how a reversal knows what to undo, and what a settlement is
// compared with. It lives in memory; the hub's ledger, under the
// idempotency keys the journal derives, is the record of money.
type journal struct {
	mu    sync.Mutex
	terms map[string]*termState
}

func newJournal() *journal { return &journal{terms: map[string]*termState{}} }

type termState struct {
	session *session
	batch   string // the batch it works in now
	closed  map[string]bool
	batches map[string]*batch
}

// session holds the working keys a sign-on issued.
type session struct {
	pin, mac cardcrypto.Key
	at       time.Time
}

type batch struct {
	records map[string]*record // by STAN
	// uploaded counts the batch upload's entries that matched the
	// journal and those that did not.
	uploadMatched, uploadDiffer int
	uploadedSTANs               map[string]bool
}

type kind int

const (
	kindTombstone kind = iota // a reversal came for a STAN the journal never saw
	kindPurchase
	kindVoid
	kindRefund
	kindBalance
	kindPreAuth     // a hold at the hub (card.hold.v1)
	kindCompletion  // a pre-authorisation's hold captured (card.capture.v1)
	kindPreAuthVoid // a pre-authorisation's hold released (card.void.v1)
)

type status int

const (
	pending  status = iota
	approved        // the hub applied it
	declined        // the hub refused it, or the plugin did before asking
	inDoubt         // the hub did not answer: it may or may not have applied it
)

// answer is what a request was answered, kept to answer a resend alike.
type answer struct {
	rc, rrn, auth string
	balance       *int64
	signOnAgain   bool
	// hubCode is the hub's error code when it refused the message: a
	// reversal tells "nothing under that key" from other refusals by it.
	hubCode string
}

// record is one transaction of a terminal's batch. Fields below done are
// written before done is closed and read after; the money state is guarded
// by journal.mu.
type record struct {
	kind kind
	key  string   // the idempotency key of its hub message
	fp   [32]byte // what the request asked, to tell a resend from a new request
	done chan struct{}
	ans  answer

	// money state, under journal.mu
	st     status
	amount int64
	pan    [32]byte
	rrn    string
	undone bool // a purchase voided, refunded or reversed; a pre-authorisation cancelled or reversed
	// refunded, of a purchase, is what its partial refunds credited back,
	// or are crediting (approved, in doubt, or being asked): what is left
	// to refund is amount less refunded.
	refunded int64
	date     string // field 13 of the request, MMDD: a completion names its pre-authorisation's
	typ      string // the hub message type of payload
	payload  []byte // the hub message, kept while in doubt to resolve it
	// claim, of a pre-authorisation, is the completion or cancellation
	// that took its hold; one that the hub declined gives it back.
	claim *record
	// orig, of a completion or cancellation, is its pre-authorisation;
	// of a partial refund, its purchase.
	orig *record

	// revMu serialises reversals (0400) of this record; revAns is the
	// answer given to one, for a resent 0400.
	revMu  sync.Mutex
	revAns *answer
}

func (r *record) finish(a answer) {
	r.ans = a
	close(r.done)
}

// wait blocks until the record is answered or ctx ends.
func (r *record) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func panHash(p cardcrypto.PAN) [32]byte { return sha256.Sum256([]byte(p.Reveal())) }

// txKey is the idempotency key of a terminal's transaction: a terminal
// numbers its transactions by STAN within a batch, so the same request sent
// again is the same payment at the hub.
func txKey(tid, batch, stan string) string { return "pos-" + tid + "-" + batch + "-" + stan }

func (j *journal) term(tid string) *termState {
	t := j.terms[tid]
	if t == nil {
		t = &termState{closed: map[string]bool{}, batches: map[string]*batch{}}
		j.terms[tid] = t
	}
	return t
}

func (t *termState) batchOf(no string) *batch {
	b := t.batches[no]
	if b == nil {
		b = &batch{records: map[string]*record{}, uploadedSTANs: map[string]bool{}}
		t.batches[no] = b
	}
	return b
}

// signOn keeps the new working keys and returns the batch the terminal is
// to work in: its own, unless that batch was settled, when the next one.
func (j *journal) signOn(tid string, s *session, terminalBatch string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.term(tid)
	t.session = s
	b := terminalBatch
	for t.closed[b] {
		b = nextBatch(b)
	}
	t.batch = b
	return b
}

func nextBatch(b string) string {
	n, _ := strconv.Atoi(b)
	return fmt.Sprintf("%06d", n%999999+1)
}

func (j *journal) signOff(tid string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if t := j.terms[tid]; t != nil {
		t.session = nil
	}
}

func (j *journal) session(tid string) *session {
	j.mu.Lock()
	defer j.mu.Unlock()
	if t := j.terms[tid]; t != nil {
		return t.session
	}
	return nil
}

// state reports a terminal's session and batch.
func (j *journal) state(tid string) (signedOn bool, at time.Time, batchNo string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if t := j.terms[tid]; t != nil {
		if t.session != nil {
			return true, t.session.at, t.batch
		}
		return false, time.Time{}, t.batch
	}
	return false, time.Time{}, ""
}

// isClosed reports whether a batch of the terminal was settled.
func (j *journal) isClosed(tid, batchNo string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.term(tid).closed[batchNo]
}

// begin records a new transaction under its STAN, or finds the one
// already there: existing is true for the same request sent again, and
// conflict for a different request reusing the STAN (answered 94).
func (j *journal) begin(tid, batchNo, stan string, k kind, fp [32]byte) (r *record, existing, conflict bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.term(tid)
	if !t.closed[batchNo] {
		t.batch = batchNo
	}
	b := t.batchOf(batchNo)
	if r := b.records[stan]; r != nil {
		if r.fp != fp {
			return nil, false, true
		}
		return r, true, false
	}
	r = &record{kind: k, key: txKey(tid, batchNo, stan), fp: fp, done: make(chan struct{})}
	b.records[stan] = r
	return r, false, false
}

// lookup finds a transaction by batch and STAN.
func (j *journal) lookup(tid, batchNo, stan string) *record {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.terms[tid]
	if t == nil || t.batches[batchNo] == nil {
		return nil
	}
	return t.batches[batchNo].records[stan]
}

// lookupOrTombstone finds a transaction for a reversal; a STAN the journal
// never saw gets a tombstone, so that the original, if it arrives after
// its own reversal, is refused instead of charged.
func (j *journal) lookupOrTombstone(tid, batchNo, stan string) *record {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.term(tid).batchOf(batchNo)
	if r := b.records[stan]; r != nil {
		return r
	}
	r := &record{kind: kindTombstone, key: txKey(tid, batchNo, stan), done: make(chan struct{}), st: declined}
	close(r.done)
	b.records[stan] = r
	return r
}

// update changes a record's money state under the lock.
func (j *journal) update(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f()
}

// claimed reports whether a completion or cancellation holds r's hold
// (one the hub has not declined). Under journal.mu.
func (r *record) claimed() bool { return r.claim != nil && r.claim.st != declined }

// standsAsDebit and standsAsCredit say how a record counts in the batch
// totals. Under journal.mu.
func (r *record) standsAsDebit() bool {
	return r.st == approved && ((r.kind == kindPurchase && !r.undone) || r.kind == kindCompletion)
}

func (r *record) standsAsCredit() bool { return r.st == approved && r.kind == kindRefund }

// totals are the batch's debits (purchases that stand and completions) and
// credits (refunds), as a terminal's settlement counts them: voided and
// reversed purchases, the voids themselves, pre-authorisations and their
// cancellations count in neither.
func (j *journal) totals(tid, batchNo string) iso.Tally {
	j.mu.Lock()
	defer j.mu.Unlock()
	var t iso.Tally
	ts := j.terms[tid]
	if ts == nil || ts.batches[batchNo] == nil {
		return t
	}
	for _, r := range ts.batches[batchNo].records {
		switch {
		case r.standsAsDebit():
			t.DebitAmount += r.amount
			t.DebitCount++
		case r.standsAsCredit():
			t.CreditAmount += r.amount
			t.CreditCount++
		}
	}
	return t
}

// close marks a batch settled: no further transaction may use it.
func (j *journal) close(tid, batchNo string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.term(tid)
	t.closed[batchNo] = true
	if t.batch == batchNo {
		t.batch = nextBatch(batchNo)
	}
}

// upload compares one batch upload entry with the journal.
func (j *journal) upload(tid, batchNo string, e iso.BatchEntry) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.term(tid).batchOf(batchNo)
	b.uploadedSTANs[e.STAN] = true
	r := b.records[e.STAN]
	ok := r != nil && (r.standsAsDebit() || r.standsAsCredit()) && r.amount == e.Amount && r.pan == sha256.Sum256([]byte(e.PAN))
	if ok {
		b.uploadMatched++
	} else {
		b.uploadDiffer++
	}
	return ok
}

// uploadSummary says how a finished batch upload compared: entries that
// matched, entries that did not, and transactions of the journal that
// stand but were not uploaded.
func (j *journal) uploadSummary(tid, batchNo string) (matched, differ, missing int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.term(tid).batchOf(batchNo)
	for stan, r := range b.records {
		if (r.standsAsDebit() || r.standsAsCredit()) && !b.uploadedSTANs[stan] {
			missing++
		}
	}
	return b.uploadMatched, b.uploadDiffer, missing
}
