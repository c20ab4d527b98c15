package bus

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// DeadLetter is a message whose handler failed for good: a non-retryable
// error, a panic, or retries used up. It keeps all that is needed to look
// into it and to replay it to the handler that failed.
type DeadLetter struct {
	// ID is assigned by the store, increasing in the order letters are put.
	ID int64
	// Topic is where the message was published, and where Replay sends it.
	Topic string
	// Handler names the handler that failed on it.
	Handler string
	// Reason is the handler's final error.
	Reason string
	// MessageUUID is the failed message's UUID.
	MessageUUID string
	// Payload is the message body, as published.
	Payload []byte
	// Metadata is the message's metadata, as published (correlation ID and
	// idempotency key included).
	Metadata map[string]string
	// At is when the handler gave up.
	At time.Time
	// ReplayedAt is when the letter was replayed, nil until then.
	ReplayedAt *time.Time
}

// DeadLetterStore keeps dead letters for operators to list, read and
// replay. Implementations must be safe for concurrent use.
type DeadLetterStore interface {
	// Put stores l under a new ID (l.ID is ignored). Dead letters are
	// delivered at least once, so a store should ignore a second Put of the
	// same MessageUUID and Handler.
	Put(ctx context.Context, l DeadLetter) error
	// List returns up to limit letters with IDs above after, in ID order.
	List(ctx context.Context, after int64, limit int) ([]DeadLetter, error)
	// Get returns the letter with the given ID, or ErrDeadLetterNotFound.
	Get(ctx context.Context, id int64) (DeadLetter, error)
	// MarkReplayed records that the letter was replayed at the given time,
	// or returns ErrDeadLetterNotFound.
	MarkReplayed(ctx context.Context, id int64, at time.Time) error
}

// MemoryDeadLetters is a DeadLetterStore in memory: the default when the
// hub has no database to keep them in, and for tests. Letters are lost on
// restart.
type MemoryDeadLetters struct {
	mu      sync.Mutex
	letters []DeadLetter // in ID order
	seen    map[[2]string]bool
}

// NewMemoryDeadLetters returns an empty store.
func NewMemoryDeadLetters() *MemoryDeadLetters {
	return &MemoryDeadLetters{seen: make(map[[2]string]bool)}
}

// Put implements DeadLetterStore.
func (m *MemoryDeadLetters) Put(_ context.Context, l DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]string{l.MessageUUID, l.Handler}
	if m.seen[key] {
		return nil
	}
	m.seen[key] = true
	l.ID = int64(len(m.letters)) + 1
	m.letters = append(m.letters, clone(l))
	return nil
}

// List implements DeadLetterStore.
func (m *MemoryDeadLetters) List(_ context.Context, after int64, limit int) ([]DeadLetter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DeadLetter
	// IDs are 1-based positions, so the letters after `after` start at index after.
	for i := max(after, 0); i < int64(len(m.letters)) && len(out) < limit; i++ {
		out = append(out, clone(m.letters[i]))
	}
	return out, nil
}

// Get implements DeadLetterStore.
func (m *MemoryDeadLetters) Get(_ context.Context, id int64) (DeadLetter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id < 1 || id > int64(len(m.letters)) {
		return DeadLetter{}, ErrDeadLetterNotFound
	}
	return clone(m.letters[id-1]), nil
}

// MarkReplayed implements DeadLetterStore.
func (m *MemoryDeadLetters) MarkReplayed(_ context.Context, id int64, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id < 1 || id > int64(len(m.letters)) {
		return ErrDeadLetterNotFound
	}
	m.letters[id-1].ReplayedAt = &at
	return nil
}

// clone copies what a caller could otherwise change under the store.
func clone(l DeadLetter) DeadLetter {
	l.Payload = slices.Clone(l.Payload)
	l.Metadata = maps.Clone(l.Metadata)
	if l.ReplayedAt != nil {
		at := *l.ReplayedAt
		l.ReplayedAt = &at
	}
	return l
}
