// Package sim simulates the city's bus and metro validators against the
// transit plugin's front end, over real HTTP and the documented protocol
// (plugins/transit/PROTOCOL.md).
//
// A Validator numbers and signs its taps, asks online within its deadline
// (300 ms), decides offline from its local deny list when no answer comes,
// keeps every offline tap until an upload answers it, and polls the deny
// list. A Fleet runs hundreds of them at once, counts everything, can cut
// their link to the front end, and checks at the end that every tap was
// answered exactly once.
package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citycard/citycard/sdk/transit/tap"
)

// DefaultDeadline is how long a validator waits for an online answer: about
// what a gate allows a tap (DESIGN.md, section 3).
const DefaultDeadline = 300 * time.Millisecond

// MaxUpload is the most taps a validator uploads in one request.
const MaxUpload = 1000

// Statuses of a tap's answer (PROTOCOL.md).
const (
	Charged   = "charged"
	Declined  = "declined"
	Duplicate = "duplicate"
	Refused   = "refused"
	Retry     = "retry"
)

// Device is a validator as the hub registers it
// (POST /v1/transit/devices).
type Device struct {
	ID       string `json:"id"`
	Operator string `json:"operator"`
	Mode     string `json:"mode"`
	Route    string `json:"route"`
}

// Counters count what validators did; a Fleet's validators share one.
type Counters struct {
	Taps, DeniedLocally, OnlineAnswers, OfflineDecisions atomic.Int64
	Uploads, UploadFailures, UploadedTaps, Retries       atomic.Int64
	Polls, PollFailures                                  atomic.Int64
	Charged, Declined, Duplicate, Refused                atomic.Int64
	AnsweredTwice                                        atomic.Int64
}

// Counts is a snapshot of Counters.
type Counts struct {
	// Taps made (each numbered and signed); cards refused from the local
	// deny list are DeniedLocally and make no tap.
	Taps, DeniedLocally int64
	// Taps answered online, and taps decided offline (kept for upload).
	OnlineAnswers, OfflineDecisions int64
	// Upload requests, those that failed whole, the taps they carried and
	// the taps answered "retry" (kept for the next upload).
	Uploads, UploadFailures, UploadedTaps, Retries int64
	// Deny list downloads, and those that failed.
	Polls, PollFailures int64
	// Final answers by status, online and uploaded together.
	Charged, Declined, Duplicate, Refused int64
	// Taps answered more than once: always 0 unless something is wrong.
	AnsweredTwice int64
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() Counts {
	return Counts{
		Taps: c.Taps.Load(), DeniedLocally: c.DeniedLocally.Load(), OnlineAnswers: c.OnlineAnswers.Load(), OfflineDecisions: c.OfflineDecisions.Load(),
		Uploads: c.Uploads.Load(), UploadFailures: c.UploadFailures.Load(), UploadedTaps: c.UploadedTaps.Load(), Retries: c.Retries.Load(),
		Polls: c.Polls.Load(), PollFailures: c.PollFailures.Load(),
		Charged: c.Charged.Load(), Declined: c.Declined.Load(), Duplicate: c.Duplicate.Load(), Refused: c.Refused.Load(),
		AnsweredTwice: c.AnsweredTwice.Load(),
	}
}

func (c *Counters) final(status string) {
	switch status {
	case Charged:
		c.Charged.Add(1)
	case Declined:
		c.Declined.Add(1)
	case Duplicate:
		c.Duplicate.Add(1)
	case Refused:
		c.Refused.Add(1)
	}
}

// Config is one validator's set-up.
type Config struct {
	Device Device
	// Key is the device key the hub issued (tap.KeySize bytes).
	Key []byte
	// Stops are where the vehicle or gate may be; one is picked per tap.
	Stops []string
	// Client reaches the front end.
	Client *Client
	// Deadline is the online deadline; DefaultDeadline if zero.
	Deadline time.Duration
	// Counters, if set, are shared with other validators.
	Counters *Counters
	// Seed makes the choice of stops repeatable.
	Seed uint64
}

// Validator is one simulated validator. Its methods are safe for
// concurrent use.
type Validator struct {
	dev      Device
	key      []byte
	stops    []string
	client   *Client
	deadline time.Duration
	counters *Counters

	mu          sync.Mutex
	rand        *rand.Rand
	seq         int64
	deny        map[string]struct{}
	denyVersion int64 // -1: none yet
	queue       []tap.Tap
	answers     map[int64]string // seq → final status
	offline     bool

	uploading sync.Mutex // one upload at a time, so a tap is never in two
}

// Decision is what the validator did with a card.
type Decision struct {
	// Seq is the tap's number; 0 when the local deny list refused the card
	// before any tap was made.
	Seq int64
	// Allowed says whether the gate opened.
	Allowed bool
	// Online is set when the hub's answer came in time.
	Online bool
	// Result is the hub's answer, when Online.
	Result Result
	// Reason says why the gate stayed shut, or why the decision was
	// offline.
	Reason string
}

// NewValidator returns a validator with no taps and no deny list.
func NewValidator(c Config) (*Validator, error) {
	if len(c.Key) != tap.KeySize {
		return nil, tap.ErrBadKey
	}
	if c.Client == nil {
		return nil, errors.New("sim: a validator needs a Client")
	}
	if len(c.Stops) == 0 {
		c.Stops = []string{""}
	}
	if c.Deadline <= 0 {
		c.Deadline = DefaultDeadline
	}
	if c.Counters == nil {
		c.Counters = &Counters{}
	}
	return &Validator{dev: c.Device, key: c.Key, stops: c.Stops, client: c.Client, deadline: c.Deadline, counters: c.Counters,
		rand: rand.New(rand.NewPCG(c.Seed, 0x7a11)), deny: map[string]struct{}{}, denyVersion: -1, answers: map[int64]string{}}, nil
}

// Device returns the validator's registration.
func (v *Validator) Device() Device { return v.dev }

// SetOffline makes the validator decide every tap offline without asking,
// as when its radio is off; SetOffline(false) asks online again.
func (v *Validator) SetOffline(off bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.offline = off
}

// Tap presents card at the validator now. A card on the local deny list is
// refused without a tap; otherwise the tap is numbered, signed and sent
// online; if no answer comes within the deadline, the validator lets the
// rider through (the first-ride risk: the fare may take the purse below
// zero) and keeps the tap, re-signed as offline, for the next upload.
func (v *Validator) Tap(ctx context.Context, card string) Decision {
	v.mu.Lock()
	if _, denied := v.deny[card]; denied {
		v.mu.Unlock()
		v.counters.DeniedLocally.Add(1)
		return Decision{Reason: "on the local deny list"}
	}
	v.seq++
	t := tap.Tap{Device: v.dev.ID, Seq: v.seq, Card: card, At: time.Now().UTC(), Kind: tap.On,
		Route: v.dev.Route, Stop: v.stops[v.rand.IntN(len(v.stops))]}
	offline := v.offline
	v.mu.Unlock()
	v.counters.Taps.Add(1)

	reason := "offline"
	if !offline {
		t.MAC = v.sign(t)
		a, err := v.client.Tap(ctx, t, v.deadline)
		if err == nil {
			v.counters.OnlineAnswers.Add(1)
			v.record(t.Seq, a.Status)
			return Decision{Seq: t.Seq, Allowed: a.Status == Charged || a.Status == Duplicate, Online: true, Result: a.Result, Reason: a.Reason}
		}
		reason = err.Error()
	}
	t.Offline = true
	t.MAC = v.sign(t)
	v.mu.Lock()
	v.queue = append(v.queue, t)
	v.mu.Unlock()
	v.counters.OfflineDecisions.Add(1)
	return Decision{Seq: t.Seq, Allowed: true, Reason: reason}
}

func (v *Validator) sign(t tap.Tap) string {
	mac, err := tap.Sign(v.key, t)
	if err != nil {
		// NewValidator checked the key's size, the only way Sign fails.
		panic(err)
	}
	return mac
}

// record keeps a tap's final answer; a second one is counted as an error.
func (v *Validator) record(seq int64, status string) {
	v.mu.Lock()
	_, twice := v.answers[seq]
	if !twice {
		v.answers[seq] = status
	}
	v.mu.Unlock()
	if twice {
		v.counters.AnsweredTwice.Add(1)
		return
	}
	v.counters.final(status)
}

// Queued returns how many taps wait for an upload.
func (v *Validator) Queued() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.queue)
}

// Upload uploads up to MaxUpload queued taps and forgets those answered;
// taps answered "retry", and all of them if the upload fails, stay queued.
// It returns how many were answered.
func (v *Validator) Upload(ctx context.Context) (int, error) {
	v.uploading.Lock()
	defer v.uploading.Unlock()
	v.mu.Lock()
	batch := slices.Clone(v.queue[:min(len(v.queue), MaxUpload)])
	v.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	v.counters.Uploads.Add(1)
	v.counters.UploadedTaps.Add(int64(len(batch)))
	a, err := v.client.Upload(ctx, batch)
	if err != nil {
		v.counters.UploadFailures.Add(1)
		return 0, err
	}
	done := map[int64]bool{}
	for i, r := range a.Results {
		if r.Status == Retry {
			v.counters.Retries.Add(1)
			continue
		}
		v.record(batch[i].Seq, r.Status)
		done[batch[i].Seq] = true
	}
	v.mu.Lock()
	v.queue = slices.DeleteFunc(v.queue, func(t tap.Tap) bool { return done[t.Seq] })
	v.mu.Unlock()
	return len(done), nil
}

// PollDenylist brings the local deny list up to the front end's, waiting up
// to wait for a change (0: answer at once).
func (v *Validator) PollDenylist(ctx context.Context, wait time.Duration) error {
	v.mu.Lock()
	since := v.denyVersion
	v.mu.Unlock()
	v.counters.Polls.Add(1)
	d, err := v.client.Denylist(ctx, since, wait)
	if err != nil {
		v.counters.PollFailures.Add(1)
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if d.Full {
		v.deny = make(map[string]struct{}, len(d.Cards))
		for _, c := range d.Cards {
			v.deny[c] = struct{}{}
		}
		v.denyVersion = d.Version
		return nil
	}
	if d.Since != v.denyVersion {
		// Another poll got there first; the next poll catches up.
		return nil
	}
	for _, c := range d.Remove {
		delete(v.deny, c)
	}
	for _, c := range d.Add {
		v.deny[c] = struct{}{}
	}
	v.denyVersion = d.Version
	return nil
}

// DenylistVersion returns the local deny list's version (-1: none) and size.
func (v *Validator) DenylistVersion() (int64, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.denyVersion, len(v.deny)
}

// Denied reports whether card is on the local deny list.
func (v *Validator) Denied(card string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.deny[card]
	return ok
}

// Answers returns each tap's final status by sequence number.
func (v *Validator) Answers() map[int64]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[int64]string, len(v.answers))
	for k, s := range v.answers {
		out[k] = s
	}
	return out
}

// Check reports a tap that has no final answer yet, or an answer
// counted twice.
func (v *Validator) Check() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var missing []int64
	for s := int64(1); s <= v.seq; s++ {
		if _, ok := v.answers[s]; !ok {
			missing = append(missing, s)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%s: %d of %d taps not answered (first %d), %d queued", v.dev.ID, len(missing), v.seq, missing[0], len(v.queue))
	case len(v.answers) != int(v.seq):
		return fmt.Errorf("%s: %d answers for %d taps", v.dev.ID, len(v.answers), v.seq)
	}
	return nil
}

// Seq returns how many taps the validator has made.
func (v *Validator) Seq() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seq
}
