package postgres_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// testURL returns $CITYCARD_TEST_POSTGRES or skips t.
func testURL(t testing.TB) string {
	url := os.Getenv(storetest.PostgresEnv)
	if url == "" {
		t.Skip(storetest.PostgresEnv + " not set: skipping PostgreSQL tests")
	}
	return url
}

func TestStore(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.OpenPostgres(t) })
}

// TestShared runs the two-node cases on two stores, each with its own
// pool, on one schema.
func TestShared(t *testing.T) {
	url := testURL(t)
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		a, drop, err := postgres.OpenTestSchema(t.Context(), url)
		if err != nil {
			t.Fatalf("open postgres store: %v", err)
		}
		t.Cleanup(drop)
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = a.Schema()
		cfg.MaxConns = 4
		b, err := postgres.OpenConfig(t.Context(), cfg)
		if err != nil {
			t.Fatalf("open second postgres store: %v", err)
		}
		t.Cleanup(func() { b.Close() }) // runs before drop
		return a, b
	})
}

// TestReopen checks that data survives a reopen and that migrating an
// up-to-date schema, from several hubs at once, is harmless.
func TestReopen(t *testing.T) {
	url := testURL(t)
	ctx := t.Context()
	s, drop, err := postgres.OpenTestSchema(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	if err := s.AddMerchant(ctx, store.Merchant{ID: "M1", Name: "m"}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := pgxpool.ParseConfig(url)
			if err != nil {
				errs <- err
				return
			}
			cfg.ConnConfig.RuntimeParams["search_path"] = s.Schema()
			cfg.MaxConns = 2
			s2, err := postgres.OpenConfig(context.Background(), cfg)
			if err != nil {
				errs <- err
				return
			}
			defer s2.Close()
			if _, err := s2.GetMerchant(context.Background(), "M1"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestOpenUnreachable checks that a database that cannot be reached is an
// error at Open, not at first use.
func TestOpenUnreachable(t *testing.T) {
	s, err := postgres.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil {
		s.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
}

func BenchmarkCommitBatch(b *testing.B) {
	testURL(b)
	b.Run("payments-1000", func(b *testing.B) { storetest.BenchCommit(b, storetest.OpenPostgres(b), 1000) })
	b.Run("requests-1000", func(b *testing.B) { storetest.BenchCommitRequests(b, storetest.OpenPostgres(b), 1000) })
	b.Run("local-1000", func(b *testing.B) { storetest.BenchCommitLocal(b, storetest.OpenPostgres(b), 1000) })
	b.Run("taps-1000", func(b *testing.B) { storetest.BenchCommitTaps(b, storetest.OpenPostgres(b), 1000) })
}

func BenchmarkLoad(b *testing.B) {
	testURL(b)
	b.Run("keys-1", func(b *testing.B) { storetest.BenchLoad(b, storetest.OpenPostgres(b), 1) })
	b.Run("keys-100", func(b *testing.B) { storetest.BenchLoad(b, storetest.OpenPostgres(b), 100) })
}
