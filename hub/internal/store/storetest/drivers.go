package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
)

// PostgresEnv names the environment variable holding the URL of a PostgreSQL
// database the tests may create schemas in, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "CITYCARD_TEST_POSTGRES"

// OpenSQLite opens an empty SQLite store in a temporary directory, closed
// when t ends.
func OpenSQLite(t testing.TB) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "citycard.db"))
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// OpenPostgres opens an empty PostgreSQL store in a fresh schema of the
// database named by $CITYCARD_TEST_POSTGRES, dropped when t ends. It skips t
// when the variable is unset and fails it when the database is unreachable.
func OpenPostgres(t testing.TB) store.Store {
	t.Helper()
	url := os.Getenv(PostgresEnv)
	if url == "" {
		t.Skip(PostgresEnv + " not set: skipping PostgreSQL tests")
	}
	s, drop, err := postgres.OpenTestSchema(context.Background(), url)
	if err != nil {
		t.Fatalf("open postgres store (%s is set): %v", PostgresEnv, err)
	}
	t.Cleanup(drop)
	return s
}

// ForEachDriver runs fn as the subtests "sqlite" and "postgres", each with an
// empty store of that driver. The postgres subtest is skipped, with the
// reason shown, when $CITYCARD_TEST_POSTGRES is unset.
func ForEachDriver(t *testing.T, fn func(t *testing.T, s store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, OpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, OpenPostgres(t)) })
}

// EachDriverB is ForEachDriver for benchmarks.
func EachDriverB(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, OpenSQLite(b)) })
	b.Run("postgres", func(b *testing.B) { fn(b, OpenPostgres(b)) })
}
