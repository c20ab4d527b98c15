package bus

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// IdempotencyStore remembers which idempotency keys a handler has already
// handled, so a message sent twice has one effect. The router scopes keys by
// handler, so two handlers of one topic each see every key once.
//
// A key is remembered only once its handler succeeded: a message that failed
// (and went to the dead letters) can be sent again, or replayed, and run.
// Implementations must be safe for concurrent use. A durable implementation
// should let a claim that is never completed or released (the process died
// mid-handler) lapse after a lease, or that key would be blocked for good.
type IdempotencyStore interface {
	// Claim reserves key for the caller. It reports false when the key was
	// handled within the store's window or is being handled right now; the
	// message is then a duplicate and is acknowledged without running.
	Claim(ctx context.Context, key string) (bool, error)
	// Complete records that the claimed key was handled, for the window.
	Complete(ctx context.Context, key string) error
	// Release forgets a claim whose handler failed.
	Release(ctx context.Context, key string) error
}

// Defaults of the in-memory idempotency store.
const (
	DefaultDedupWindow   = 24 * time.Hour
	DefaultDedupCapacity = 100_000
)

// MemoryIdempotencyStore is an IdempotencyStore in memory, bounded in time
// (the window) and in size (an LRU of capacity keys, oldest completion
// evicted first). It forgets everything on restart and is not shared between
// hub nodes; the durable backends then rely on the ledger's own idempotency.
type MemoryIdempotencyStore struct {
	mu       sync.Mutex
	window   time.Duration
	capacity int
	now      func() time.Time
	entries  map[string]*list.Element
	order    *list.List // front: most recently claimed or completed
}

type keyEntry struct {
	key     string
	done    bool
	expires time.Time
}

// NewMemoryIdempotencyStore returns an empty store remembering up to
// capacity keys for window each; zero or negative values take the defaults
// (24h, 100,000 keys).
func NewMemoryIdempotencyStore(window time.Duration, capacity int) *MemoryIdempotencyStore {
	if window <= 0 {
		window = DefaultDedupWindow
	}
	if capacity <= 0 {
		capacity = DefaultDedupCapacity
	}
	return &MemoryIdempotencyStore{
		window:   window,
		capacity: capacity,
		now:      time.Now,
		entries:  make(map[string]*list.Element),
		order:    list.New(),
	}
}

// Claim implements IdempotencyStore.
func (s *MemoryIdempotencyStore) Claim(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	if el, ok := s.entries[key]; ok {
		e := el.Value.(*keyEntry)
		if !e.done || now.Before(e.expires) {
			return false, nil
		}
		s.remove(el)
	}
	s.entries[key] = s.order.PushFront(&keyEntry{key: key})
	for s.order.Len() > s.capacity {
		s.remove(s.order.Back())
	}
	return true, nil
}

// Complete implements IdempotencyStore.
func (s *MemoryIdempotencyStore) Complete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[key]
	if !ok {
		// Evicted while in flight by a burst of other keys: remember it anyway.
		el = s.order.PushFront(&keyEntry{key: key})
		s.entries[key] = el
	}
	e := el.Value.(*keyEntry)
	e.done, e.expires = true, s.now().Add(s.window)
	s.order.MoveToFront(el)
	for s.order.Len() > s.capacity {
		s.remove(s.order.Back())
	}
	return nil
}

// Release implements IdempotencyStore.
func (s *MemoryIdempotencyStore) Release(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.entries[key]; ok {
		s.remove(el)
	}
	return nil
}

// Len returns how many keys the store holds, claimed or completed.
func (s *MemoryIdempotencyStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// expire drops completed keys past their window from the back, where the
// oldest completions sit, so memory follows the window and not only the cap.
func (s *MemoryIdempotencyStore) expire(now time.Time) {
	for el := s.order.Back(); el != nil; {
		e := el.Value.(*keyEntry)
		if !e.done || now.Before(e.expires) {
			return
		}
		prev := el.Prev()
		s.remove(el)
		el = prev
	}
}

func (s *MemoryIdempotencyStore) remove(el *list.Element) {
	delete(s.entries, el.Value.(*keyEntry).key)
	s.order.Remove(el)
}
