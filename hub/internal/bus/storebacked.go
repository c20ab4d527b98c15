package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// StoreDeadLetters is a DeadLetterStore kept in the hub's database, through
// the store's drivers: letters survive a restart, and hub nodes on one
// PostgreSQL database share them, so a letter put by one node can be listed
// and replayed from any.
type StoreDeadLetters struct {
	s store.BusStore
	// redact, when set, rewrites a letter's payload before it is stored.
	redact func([]byte) []byte
}

var _ DeadLetterStore = (*StoreDeadLetters)(nil)

// NewStoreDeadLetters returns a DeadLetterStore kept in s. The caller keeps
// s open while the router runs and closes it after.
func NewStoreDeadLetters(s store.BusStore) *StoreDeadLetters {
	return &StoreDeadLetters{s: s}
}

// Redacting has redact rewrite every letter's payload before it is
// stored: what must never rest in the database in clear (a bank card's
// number, a PIN block) is masked. A replay then carries the masked
// payload.
func (d *StoreDeadLetters) Redacting(redact func([]byte) []byte) *StoreDeadLetters {
	d.redact = redact
	return d
}

// Put implements DeadLetterStore. A second Put of a handler's failure of a
// message is ignored by the store's unique key, across nodes too.
func (d *StoreDeadLetters) Put(ctx context.Context, l DeadLetter) error {
	// PostgreSQL text cannot hold NUL, and an error from a binary partner
	// protocol may carry one; refusing the letter would leave it
	// redelivered for ever.
	payload := l.Payload
	if d.redact != nil {
		payload = d.redact(payload)
	}
	_, err := d.s.PutDeadLetter(ctx, store.DeadLetter{
		Handler:     noNUL(l.Handler),
		Topic:       noNUL(l.Topic),
		MessageUUID: noNUL(l.MessageUUID),
		Payload:     payload,
		Metadata:    l.Metadata,
		Reason:      noNUL(l.Reason),
		FailedAt:    l.At,
	})
	if err != nil {
		return fmt.Errorf("bus: store dead letter: %w", err)
	}
	return nil
}

func noNUL(s string) string { return strings.ReplaceAll(s, "\x00", "\uFFFD") }

// List implements DeadLetterStore: oldest first, IDs above after.
func (d *StoreDeadLetters) List(ctx context.Context, after int64, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		// The store reads a zero limit as none; the interface, as an empty page.
		return nil, nil
	}
	ls, err := d.s.ListDeadLetters(ctx, store.DeadLetterPage{Cursor: max(after, 0), Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("bus: list dead letters: %w", err)
	}
	out := make([]DeadLetter, len(ls))
	for i, l := range ls {
		out[i] = fromStore(l)
	}
	return out, nil
}

// Get implements DeadLetterStore.
func (d *StoreDeadLetters) Get(ctx context.Context, id int64) (DeadLetter, error) {
	l, err := d.s.GetDeadLetter(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return DeadLetter{}, ErrDeadLetterNotFound
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("bus: get dead letter %d: %w", id, err)
	}
	return fromStore(l), nil
}

// MarkReplayed implements DeadLetterStore. The store also counts replays.
func (d *StoreDeadLetters) MarkReplayed(ctx context.Context, id int64, at time.Time) error {
	err := d.s.MarkDeadLetterReplayed(ctx, id, at)
	if errors.Is(err, store.ErrNotFound) {
		return ErrDeadLetterNotFound
	}
	if err != nil {
		return fmt.Errorf("bus: mark dead letter %d replayed: %w", id, err)
	}
	return nil
}

func fromStore(l store.DeadLetter) DeadLetter {
	return DeadLetter{
		ID:          l.ID,
		Topic:       l.Topic,
		Handler:     l.Handler,
		Reason:      l.Reason,
		MessageUUID: l.MessageUUID,
		Payload:     l.Payload,
		Metadata:    l.Metadata,
		At:          l.FailedAt,
		ReplayedAt:  l.ReplayedAt,
	}
}

// DefaultClaimLease is how long a claim of the store-backed idempotency
// store holds a key when its handler neither completes nor releases it.
// With the router's defaults a handler holds a key for at most about 21s
// (four attempts of 5s, and the waits between them).
const DefaultClaimLease = 5 * time.Minute

// purgeEvery is how often a StoreIdempotency deletes the keys that lapsed.
const purgeEvery = time.Minute

// StoreIdempotency is an IdempotencyStore kept in the hub's database,
// through the store's drivers: handled keys survive a restart, and hub nodes
// on one PostgreSQL database share them, so a message delivered to two
// nodes runs once. A claim lapses after a lease, so a key whose node died
// mid-handler can run again; a completed key is remembered for the window.
//
// Times are the hub's clock: nodes' clocks must agree to well within the
// lease. Lapsed keys are purged by Claim, at most once a minute.
type StoreIdempotency struct {
	s      store.BusStore
	window time.Duration
	lease  time.Duration
	holder string // names this instance's claims, so it releases only its own
	now    func() time.Time

	nextPurge atomic.Int64 // unix nanoseconds
}

var _ IdempotencyStore = (*StoreIdempotency)(nil)

// NewStoreIdempotency returns an IdempotencyStore kept in s that remembers a
// completed key for window and lets an unfinished claim lapse after lease.
// Zero or negative values take the defaults (DefaultDedupWindow,
// DefaultClaimLease). The lease must outlast the longest a handler may run
// with all its retries, or a slow handler's key could be claimed again
// while it runs. The caller keeps s open while the router runs.
func NewStoreIdempotency(s store.BusStore, window, lease time.Duration) *StoreIdempotency {
	if window <= 0 {
		window = DefaultDedupWindow
	}
	if lease <= 0 {
		lease = DefaultClaimLease
	}
	return &StoreIdempotency{s: s, window: window, lease: lease, holder: newHolder(), now: time.Now}
}

// newHolder names an instance for its claims: host and process, for an
// operator reading the table, and a random part, as a process may hold two.
func newHolder() string {
	host, _ := os.Hostname()
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Claim implements IdempotencyStore.
func (k *StoreIdempotency) Claim(ctx context.Context, key string) (bool, error) {
	now := k.now()
	ok, err := k.s.ClaimDedupKey(ctx, store.DedupClaim{Key: key, Holder: k.holder, At: now, Until: now.Add(k.lease)})
	if err != nil {
		return false, fmt.Errorf("bus: claim idempotency key: %w", err)
	}
	if next := k.nextPurge.Load(); now.UnixNano() >= next &&
		k.nextPurge.CompareAndSwap(next, now.Add(purgeEvery).UnixNano()) {
		// Lapsed keys do no harm but take space. A failed purge is left to
		// the next one: the claim itself stands.
		_, _ = k.s.PurgeDedupKeys(ctx, now)
	}
	return ok, nil
}

// Complete implements IdempotencyStore.
func (k *StoreIdempotency) Complete(ctx context.Context, key string) error {
	now := k.now()
	if err := k.s.CompleteDedupKey(ctx, key, now, now.Add(k.window)); err != nil {
		return fmt.Errorf("bus: complete idempotency key: %w", err)
	}
	return nil
}

// Release implements IdempotencyStore. A claim that lapsed and was taken by
// another node is that node's and stays.
func (k *StoreIdempotency) Release(ctx context.Context, key string) error {
	if err := k.s.ReleaseDedupKey(ctx, key, k.holder); err != nil {
		return fmt.Errorf("bus: release idempotency key: %w", err)
	}
	return nil
}

// Purge deletes the keys that lapsed by now and returns how many, for a
// caller that prefers its own schedule to Claim's.
func (k *StoreIdempotency) Purge(ctx context.Context) (int64, error) {
	n, err := k.s.PurgeDedupKeys(ctx, k.now())
	if err != nil {
		return 0, fmt.Errorf("bus: purge idempotency keys: %w", err)
	}
	return n, nil
}
