package unionpay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// journalFile is the journal's name in the state directory.
const journalFile = "unionpay.journal"

// original is what the link keeps of an authorisation to reverse it: the
// fields that identify it at the switch, never the card number, track data
// or PIN block, so the journal holds no card data.
type original struct {
	Key       string `json:"key"` // the authorisation's idempotency key
	STAN      string `json:"stan"`
	Date      string `json:"date"` // MMDD, field 13 of the original
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"` // field 49
	Terminal  string `json:"terminal"`
	Merchant  string `json:"merchant"`
	EntryMode string `json:"entry_mode"`
	MaskedPAN string `json:"masked_pan"`
	Reason    string `json:"reason,omitempty"` // field 39 of the 0400
	// Kind is the transaction (kind* constants); empty in older journals
	// means a purchase.
	Kind string `json:"kind,omitempty"`
	// Proc, Cond and MsgType are fields 3, 25 and 60.1 of the request,
	// which its reversal repeats; empty means a purchase's.
	Proc    string `json:"proc,omitempty"`
	Cond    string `json:"cond,omitempty"`
	MsgType string `json:"msg_type,omitempty"`
	// Ref is the key of the transaction a completion, void, refund or
	// pre-authorisation cancellation refers to, and RefSTAN, RefDate,
	// RefRRN and RefAuth what identifies it at the switch (fields 61, 37
	// and 38), kept so the request can be sent again as it was.
	Ref     string `json:"ref,omitempty"`
	RefSTAN string `json:"ref_stan,omitempty"`
	RefDate string `json:"ref_date,omitempty"`
	RefRRN  string `json:"ref_rrn,omitempty"`
	RefAuth string `json:"ref_auth,omitempty"`
}

// Transaction kinds, as original.Kind.
const (
	kindPurchase      = "purchase"
	kindPreAuth       = "preauth"
	kindCompletion    = "completion"
	kindVoid          = "void"
	kindRefund        = "refund"
	kindPreAuthCancel = "preauth_cancel"
	kindBalance       = "balance"
)

// kind returns o's kind, a purchase for records written before kinds.
func (o original) kind() string {
	if o.Kind == "" {
		return kindPurchase
	}
	return o.Kind
}

// resendable kinds are not reversed when their answer never comes: the
// hub sends them again under the same key and the link resends the same
// request (same STAN), which the switch applies only once.
func resendable(kind string) bool {
	return kind == kindVoid || kind == kindRefund || kind == kindPreAuthCancel
}

// record is one line of the journal.
type record struct {
	Op     string         `json:"op"` // sent, answer, queue, acked
	Key    string         `json:"key"`
	Orig   *original      `json:"orig,omitempty"`
	Answer *Authorization `json:"answer,omitempty"`
}

// journal is the plugin's durable state: one JSON line per event,
// appended and fsync'd before the event is acted on, replayed at start.
// It makes a redelivered authorisation answer the first answer and keeps
// reversals until the switch acknowledges them, across restarts.
type journal struct {
	mu      sync.Mutex
	f       *os.File
	answers map[string]Authorization
	sent    map[string]original // sent, not yet answered
	origs   map[string]original // every authorisation sent, by key
	queued  map[string]original // reversals not yet acknowledged
	order   []string            // queued keys in the order queued
	acked   map[string]bool
	maxSTAN int
	done    map[string]chan struct{} // closed when a reversal is acknowledged
}

// openJournal replays the journal in dir. An authorisation sent but never
// answered (the plugin stopped while waiting) is declined 68 and queued for
// reversal, as an acquirer does with a request whose answer it never saw.
func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unionpay: state directory: %w", err)
	}
	path := filepath.Join(dir, journalFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unionpay: journal: %w", err)
	}
	j := &journal{f: f, answers: map[string]Authorization{}, sent: map[string]original{}, origs: map[string]original{},
		queued: map[string]original{}, acked: map[string]bool{}, done: map[string]chan struct{}{}}
	raw, err := os.ReadFile(path)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unionpay: journal: %w", err)
	}
	good := 0 // bytes of whole, readable lines
	for good < len(raw) {
		end := bytes.IndexByte(raw[good:], '\n')
		if end < 0 {
			break
		}
		var r record
		if err := json.Unmarshal(raw[good:good+end], &r); err != nil {
			break
		}
		j.apply(r)
		good += end + 1
	}
	if good < len(raw) {
		// A torn last line from a crash mid-write: cut it off, so what is
		// appended next starts on a line of its own. Everything before it stands.
		if err := f.Truncate(int64(good)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("unionpay: journal: %w", err)
		}
	}
	for key, o := range j.sent {
		if resendable(o.kind()) {
			continue // sent again when the hub retries it
		}
		ans := Authorization{Status: Declined, ResponseCode: rcTimeout, STAN: o.STAN, MaskedPAN: o.MaskedPAN}
		rs := []record{{Op: "answer", Key: key, Answer: &ans}}
		if o.kind() != kindBalance {
			o.Reason = reasonTimeout
			rs = append(rs, record{Op: "queue", Key: key, Orig: &o})
		}
		if err := j.writeLocked(rs...); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return j, nil
}

// apply changes the in-memory state by one record. j.mu is held or j is
// not yet shared.
func (j *journal) apply(r record) {
	switch r.Op {
	case "sent":
		if r.Orig != nil {
			j.sent[r.Key] = *r.Orig
			j.origs[r.Key] = *r.Orig
			if n, err := strconv.Atoi(r.Orig.STAN); err == nil && n > j.maxSTAN {
				j.maxSTAN = n
			}
		}
	case "answer":
		if r.Answer != nil {
			j.answers[r.Key] = *r.Answer
			delete(j.sent, r.Key)
		}
	case "queue":
		if r.Orig != nil && !j.acked[r.Key] {
			if _, ok := j.queued[r.Key]; !ok {
				j.order = append(j.order, r.Key)
			}
			j.queued[r.Key] = *r.Orig
		}
	case "acked":
		j.acked[r.Key] = true
		delete(j.queued, r.Key)
		if ch, ok := j.done[r.Key]; ok {
			close(ch)
			delete(j.done, r.Key)
		}
	}
}

func (j *journal) writeLocked(rs ...record) error {
	var buf []byte
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("unionpay: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("unionpay: journal: %w", err)
	}
	for _, r := range rs {
		j.apply(r)
	}
	return nil
}

func (j *journal) write(rs ...record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writeLocked(rs...)
}

// answer returns the recorded answer of an authorisation.
func (j *journal) answer(key string) (Authorization, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	a, ok := j.answers[key]
	return a, ok
}

// nextSTAN allocates a STAN after every one in the journal, so STANs do
// not repeat across restarts (until they wrap after 999999).
func (j *journal) nextSTAN() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.maxSTAN = j.maxSTAN%999999 + 1
	return fmt.Sprintf("%06d", j.maxSTAN)
}

// pending returns the reversals not yet acknowledged, oldest first.
func (j *journal) pending() []original {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]original, 0, len(j.queued))
	keep := j.order[:0]
	for _, k := range j.order {
		if o, ok := j.queued[k]; ok {
			out = append(out, o)
			keep = append(keep, k)
		}
	}
	j.order = keep
	return out
}

// reversalState says whether the reversal of key is acknowledged, queued,
// or was never asked for.
func (j *journal) reversalState(key string) (acked, queued bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, queued = j.queued[key]
	return j.acked[key], queued
}

// ackedCh returns a channel closed once the reversal of key is acknowledged.
func (j *journal) ackedCh(key string) <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	ch := make(chan struct{})
	if j.acked[key] {
		close(ch)
		return ch
	}
	if c, ok := j.done[key]; ok {
		return c
	}
	j.done[key] = ch
	return ch
}

// unanswered returns a request of key that was sent and never answered.
func (j *journal) unanswered(key string) (original, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	o, ok := j.sent[key]
	return o, ok
}

// original returns what identifies the authorisation of key at the switch.
func (j *journal) original(key string) (original, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	o, ok := j.origs[key]
	return o, ok
}

// close closes the journal file.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("unionpay: journal closed")
	}
	err := j.f.Close()
	j.f = nil
	return err
}
