package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.OpenSQLite(t) })
}

// TestShared runs the two-node cases on two stores opened on one file, as
// two processes would.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "citycard.db")
		var ss [2]store.Store
		for i := range ss {
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatalf("open sqlite store %d: %v", i, err)
			}
			t.Cleanup(func() { s.Close() })
			ss[i] = s
		}
		return ss[0], ss[1]
	})
}

// TestOpenCreatesAndReopens checks that Open creates the directory and the
// file, and that data survives a reopen, which re-runs the (up-to-date)
// migrations.
func TestOpenCreatesAndReopens(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "nested", "dir", "citycard.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	if err := s.AddMerchant(ctx, store.Merchant{ID: "M1", Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBatch(ctx, &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}}, CardSerial: 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.GetMerchant(ctx, "M1"); err != nil {
		t.Errorf("merchant lost across reopen: %v", err)
	}
	if h, err := s.Head(ctx); err != nil || h.LastBatch != 1 || h.CardSerial != 7 {
		t.Errorf("head after reopen = %+v, %v", h, err)
	}
}

// TestPragmas checks the durability settings of the write connection and
// that the read pool cannot write.
func TestPragmas(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"busy_timeout": "5000",
		"foreign_keys": "1",
	} {
		got, err := s.WritePragma(ctx, pragma)
		if err != nil || !strings.EqualFold(got, want) {
			t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
		}
	}
	if err := s.ReadExec(ctx, `INSERT INTO meta (key, value) VALUES ('x', 'y')`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "x.db?_pragma=synchronous(OFF)"} {
		if s, err := sqlite.Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func BenchmarkCommitBatch(b *testing.B) {
	b.Run("payments-1000", func(b *testing.B) { storetest.BenchCommit(b, storetest.OpenSQLite(b), 1000) })
	b.Run("requests-1000", func(b *testing.B) { storetest.BenchCommitRequests(b, storetest.OpenSQLite(b), 1000) })
	b.Run("local-1000", func(b *testing.B) { storetest.BenchCommitLocal(b, storetest.OpenSQLite(b), 1000) })
	b.Run("taps-1000", func(b *testing.B) { storetest.BenchCommitTaps(b, storetest.OpenSQLite(b), 1000) })
}

func BenchmarkLoad(b *testing.B) {
	b.Run("keys-1", func(b *testing.B) { storetest.BenchLoad(b, storetest.OpenSQLite(b), 1) })
	b.Run("keys-100", func(b *testing.B) { storetest.BenchLoad(b, storetest.OpenSQLite(b), 100) })
}
