package drivers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

func TestSQLitePath(t *testing.T) {
	for _, tc := range []struct{ rest, want, err string }{
		{"//./citycard-data/citycard.db", "./citycard-data/citycard.db", ""},
		{"///var/lib/citycard/citycard.db", "/var/lib/citycard/citycard.db", ""},
		{"//data/citycard.db", "data/citycard.db", ""},
		{"citycard.db", "citycard.db", ""},
		{"//", "", "no file path"},
		{"", "", "no file path"},
		{":memory:", "", "in-memory"},
		{"//:memory:", "", "in-memory"},
		{"//x.db?_pragma=synchronous(OFF)", "", "not supported"},
	} {
		got, err := sqlitePath(tc.rest)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("sqlitePath(%q) = %q, %v; want error with %q", tc.rest, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sqlitePath(%q) = %q, %v; want %q", tc.rest, got, err, tc.want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	// A relative path, resolved against the working directory.
	t.Chdir(dir)
	for _, dsn := range []string{"sqlite://./citycard-data/citycard.db", "sqlite://" + filepath.Join(dir, "abs", "c.db")} {
		s, err := Open(t.Context(), dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		if s.Driver() != "sqlite" {
			t.Errorf("Open(%q).Driver() = %q", dsn, s.Driver())
		}
		if _, err := s.Head(t.Context()); err != nil {
			t.Error(err)
		}
		s.Close()
	}
	for _, f := range []string{"citycard-data/citycard.db", "abs/c.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("database file not created: %v", err)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	url := os.Getenv(storetest.PostgresEnv)
	if url == "" {
		t.Skip(storetest.PostgresEnv + " not set: skipping PostgreSQL tests")
	}
	// A fresh schema, named in the DSN, keeps the test database's own
	// schemas untouched.
	s0, drop, err := postgres.OpenTestSchema(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	dsn := url + sep + "search_path=" + s0.Schema()
	for _, dsn := range []string{dsn, "postgresql" + strings.TrimPrefix(dsn, "postgres")} {
		s, err := Open(t.Context(), dsn)
		if err != nil {
			t.Fatalf("Open(postgres): %v", err)
		}
		if s.Driver() != "postgres" {
			t.Errorf("Driver() = %q", s.Driver())
		}
		if ps, ok := s.(*postgres.Store); !ok || ps.Schema() != s0.Schema() {
			t.Errorf("Open(postgres) = %T in the wrong schema", s)
		}
		if _, err := s.Head(t.Context()); err != nil {
			t.Error(err)
		}
		s.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ dsn, err string }{
		{"mysql://root:secret@localhost/db", `unknown database scheme "mysql"`},
		{"/var/lib/citycard.db", "no scheme"},
		{"sqlite::memory:", "in-memory"},
		{"postgres://u:p@127.0.0.1:1/db?connect_timeout=1", "postgres"},
	} {
		s, err := Open(t.Context(), tc.dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want error", tc.dsn)
			continue
		}
		if !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Open(%q) = %v, want error with %q", tc.dsn, err, tc.err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error leaks the password: %v", tc.dsn, err)
		}
	}
}
