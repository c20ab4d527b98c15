package wiring_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/transit"
)

// denyOp puts cards on the deny list, or takes them off.
type denyOp struct {
	cards []string
	add   bool
}

func (denyOp) Prefetch(*ledger.Keys) {}

func (o denyOp) Apply(tx *ledger.Tx) (any, error) {
	for _, c := range o.cards {
		if o.add {
			tx.Deny(c, "card_lost")
		} else {
			tx.Allow(c, "card_active")
		}
	}
	return nil, nil
}

// TestDenyList100k: a city-sized deny list of 100,000 cards is kept by the
// writer, served whole, and served as the changes since a version; the
// writer reloads it from the store after a restart.
func TestDenyList100k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 100,000-card deny list")
	}
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		const total, per = 100_000, 5_000
		for i := 0; i < total; i += per {
			cards := make([]string, per)
			for j := range cards {
				cards[j] = fmt.Sprintf("31009%011d", i+j)
			}
			if _, err := eng.Submit(ctx, denyOp{cards: cards, add: true}, ledger.SubmitOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cat, err := catalog.Default()
		if err != nil {
			t.Fatal(err)
		}
		svc, err := transit.New(eng, cat, transit.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		full, err := svc.DenyList(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("full list of %d cards read in %s", full.Size, time.Since(start))
		if !full.Full || full.Version != total || full.Size != total || len(full.Cards) != total {
			t.Fatalf("full list: version %d, size %d, %d cards", full.Version, full.Size, len(full.Cards))
		}
		// Ten cards come off; a validator at the previous version gets just
		// those ten.
		var off []string
		for j := range 10 {
			off = append(off, fmt.Sprintf("31009%011d", j*7))
		}
		if _, err := eng.Submit(ctx, denyOp{cards: off}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		inc, err := svc.DenyList(ctx, total)
		if err != nil {
			t.Fatal(err)
		}
		if inc.Full || inc.Version != total+10 || len(inc.Remove) != 10 || len(inc.Add) != 0 || inc.Size != total-10 {
			t.Fatalf("changes since %d: %+v", total, inc)
		}
		// After a restart the writer holds the same list: taking a card off
		// that is on it is a change; taking one off twice is not.
		if err := eng.Close(); err != nil {
			t.Fatal(err)
		}
		eng, err = ledger.Open(ctx, st, ledger.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		if _, err := eng.Submit(ctx, denyOp{cards: []string{off[0], fmt.Sprintf("31009%011d", 1)}}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		h, err := st.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.DenyVersion != total+11 {
			t.Fatalf("deny version %d after one more change, want %d", h.DenyVersion, total+11)
		}
	})
}
