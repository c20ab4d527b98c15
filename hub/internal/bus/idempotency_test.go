package bus

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestMemoryIdempotencyStore(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewMemoryIdempotencyStore(time.Hour, 3)
	s.now = func() time.Time { return now }

	claim := func(key string, want bool) {
		t.Helper()
		got, err := s.Claim(ctx, key)
		if err != nil || got != want {
			t.Fatalf("Claim(%s) = %v, %v; want %v", key, got, err, want)
		}
	}

	claim("a", true)
	claim("a", false) // in flight: a second delivery is a duplicate
	if err := s.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	claim("a", true) // the failed attempt is forgotten
	if err := s.Complete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	claim("a", false)

	now = now.Add(59 * time.Minute)
	claim("a", false) // within the window
	now = now.Add(2 * time.Minute)
	claim("a", true) // the window passed
	if err := s.Complete(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	// Capacity 3: a fourth key evicts the oldest completion.
	for _, k := range []string{"b", "c", "d"} {
		claim(k, true)
		if err := s.Complete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
	claim("a", true) // evicted
	claim("d", false)
}

func TestMemoryIdempotencyStoreExpiresFromTheBack(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewMemoryIdempotencyStore(time.Minute, 1000)
	s.now = func() time.Time { return now }
	for i := range 100 {
		k := fmt.Sprint(i)
		if ok, _ := s.Claim(ctx, k); !ok {
			t.Fatalf("Claim(%s) refused", k)
		}
		_ = s.Complete(ctx, k)
	}
	now = now.Add(2 * time.Minute)
	if ok, _ := s.Claim(ctx, "new"); !ok {
		t.Fatal("Claim(new) refused")
	}
	// Memory follows the window, not only the cap.
	if s.Len() != 1 {
		t.Fatalf("Len = %d after the window, want 1", s.Len())
	}
}

func TestMemoryIdempotencyStoreDefaults(t *testing.T) {
	s := NewMemoryIdempotencyStore(0, 0)
	if s.window != DefaultDedupWindow || s.capacity != DefaultDedupCapacity {
		t.Fatalf("defaults: window %s, capacity %d", s.window, s.capacity)
	}
}
