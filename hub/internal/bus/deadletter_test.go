package bus

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryDeadLetters(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryDeadLetters()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, uuid := range []string{"u1", "u2", "u3"} {
		err := s.Put(ctx, DeadLetter{ID: 99, Topic: "plugin.p.t", Handler: "h", Reason: "r", MessageUUID: uuid,
			Payload: []byte{byte(i)}, Metadata: map[string]string{"k": uuid}, At: at})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Delivered twice: stored once.
	if err := s.Put(ctx, DeadLetter{Handler: "h", MessageUUID: "u2"}); err != nil {
		t.Fatal(err)
	}
	// The same message failed by another handler is a letter of its own.
	if err := s.Put(ctx, DeadLetter{Handler: "other", MessageUUID: "u2"}); err != nil {
		t.Fatal(err)
	}

	all, err := s.List(ctx, 0, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("List = %d letters, %v; want 4", len(all), err)
	}
	for i, l := range all {
		if l.ID != int64(i+1) {
			t.Fatalf("letter %d has ID %d", i, l.ID)
		}
	}
	page, _ := s.List(ctx, 1, 2)
	if len(page) != 2 || page[0].ID != 2 || page[1].ID != 3 {
		t.Fatalf("List(after 1, limit 2) = %+v", page)
	}
	if none, _ := s.List(ctx, 4, 10); len(none) != 0 {
		t.Fatalf("List past the end = %+v", none)
	}
	if none, _ := s.List(ctx, 0, 0); len(none) != 0 {
		t.Fatalf("List with limit 0 = %+v", none)
	}

	l, err := s.Get(ctx, 2)
	if err != nil || l.MessageUUID != "u2" || l.Metadata["k"] != "u2" || l.ReplayedAt != nil {
		t.Fatalf("Get(2) = %+v, %v", l, err)
	}
	// Callers get copies.
	l.Payload[0], l.Metadata["k"] = 42, "changed"
	if again, _ := s.Get(ctx, 2); again.Payload[0] != 1 || again.Metadata["k"] != "u2" {
		t.Fatalf("store changed through a returned letter: %+v", again)
	}

	if err := s.MarkReplayed(ctx, 2, at); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Get(ctx, 2); l.ReplayedAt == nil || !l.ReplayedAt.Equal(at) {
		t.Fatalf("ReplayedAt = %v", l.ReplayedAt)
	}
	for _, id := range []int64{0, -1, 5} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrDeadLetterNotFound) {
			t.Errorf("Get(%d) = %v", id, err)
		}
		if err := s.MarkReplayed(ctx, id, at); !errors.Is(err, ErrDeadLetterNotFound) {
			t.Errorf("MarkReplayed(%d) = %v", id, err)
		}
	}
}
