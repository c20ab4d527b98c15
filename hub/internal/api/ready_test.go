package api_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// unreachable is a real store whose commits fail while down, as when the
// database refuses connections: the writer's commit fails and so does the
// reload that follows it.
type unreachable struct {
	store.Store
	down atomic.Bool
}

var errUnreachable = errors.New("injected: connection refused")

func (u *unreachable) CommitBatch(ctx context.Context, b *store.Batch) error {
	if u.down.Load() {
		return errUnreachable
	}
	return u.Store.CommitBatch(ctx, b)
}

func (u *unreachable) Head(ctx context.Context) (store.Head, error) {
	if u.down.Load() {
		return store.Head{}, errUnreachable
	}
	return u.Store.Head(ctx)
}

// TestReadyzFollowsTheWriter: while the ledger writer cannot reload after a
// failed commit, /readyz answers 503 and writes are refused as retryable;
// once the store is back the hub serves again without a restart, and a
// retried write with its first key is written once.
func TestReadyzFollowsTheWriter(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, raw store.Store) {
		st := &unreachable{Store: raw}
		h := newHarness(t, st)
		h.req("GET", "/readyz", "", nil, nil).want(200)
		card := h.post(teller, "/v1/cards", map[string]any{
			"holder": map[string]any{"name": "Sun Li", "id_type": "passport", "id_number": "E12345678"},
		}).want(201).str("number")

		st.down.Store(true)
		topUp := map[string]any{"amount": 500, "currency": "CNY", "purse": "cash", "method": "cash"}
		h.postKey(teller, "/v1/cards/"+card+"/topups", "outage-topup", topUp).problem(503, "unavailable", "")
		h.req("GET", "/readyz", "", nil, nil).problem(503, "unavailable", "")

		st.down.Store(false)
		deadline := time.Now().Add(10 * time.Second)
		for h.req("GET", "/readyz", "", nil, nil).status != 200 {
			if time.Now().After(deadline) {
				t.Fatal("the store came back and /readyz still refuses")
			}
			time.Sleep(10 * time.Millisecond)
		}
		h.postKey(teller, "/v1/cards/"+card+"/topups", "outage-topup", topUp).want(201)
		h.postKey(teller, "/v1/cards/"+card+"/topups", "outage-topup", topUp).want(201)
		if got := h.get(teller, "/v1/cards/"+card).want(200).purse("cash").int("posted"); got != 500 {
			t.Fatalf("cash purse holds %d after one top-up sent three times, want 500", got)
		}
		h.verify()
	})
}
