package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

func TestTextRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 49, 22, 123456000, time.UTC)
	for _, c := range []checkpoint.Checkpoint{
		{Origin: "citycard/ledger", Batch: 0, Time: at},
		{Origin: "citycard/ledger", Batch: 4211, Hash: bytes.Repeat([]byte{7}, 32), Time: at},
		{Origin: "citycard/ledger", Batch: 9, Hash: []byte{1, 2}, Time: at, Audit: 981, AuditHash: []byte{3, 4}},
	} {
		got, err := checkpoint.Parse(c.Text())
		if err != nil {
			t.Fatalf("%q: %v", c.Text(), err)
		}
		if got.Batch != c.Batch || !bytes.Equal(got.Hash, c.Hash) || !got.Time.Equal(c.Time) ||
			got.Audit != c.Audit || !bytes.Equal(got.AuditHash, c.AuditHash) || got.Origin != c.Origin {
			t.Fatalf("round trip of %q: %+v", c.Text(), got)
		}
	}
	if got, err := checkpoint.Parse("o\n1\nAQI=\nfuture extension\n"); err != nil || got.Batch != 1 {
		t.Fatalf("an unknown extension line is skipped: %+v %v", got, err)
	}
	for _, bad := range []string{"", "o\n1\n", "o\n-1\nAA==\n", "o\n01\nAA==\n", "o\n1\n!!\n", "o\n1\nAA==\naudit x\n", "o\n1\nAA==\n\n"} {
		if _, err := checkpoint.Parse(bad); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}

// writeLog signs checkpoints of batches 1..n into a fresh log.
func writeLog(t *testing.T, n int) (path string, data []byte) {
	dir := t.TempDir()
	path = filepath.Join(dir, "c.checkpoints")
	skey, vkey := checkpoint.KeyPaths(path)
	s, _, err := checkpoint.LoadOrCreateSigner(skey, vkey, checkpoint.DefaultKeyName)
	if err != nil {
		t.Fatal(err)
	}
	l, err := checkpoint.OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		note, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: checkpoint.DefaultOrigin, Batch: int64(i),
			Hash: []byte{byte(i)}, Time: time.Unix(int64(i), 0)}, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Append(context.Background(), note); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestReadLog(t *testing.T) {
	path, data := writeLog(t, 3)
	_, vpath := checkpoint.KeyPaths(path)
	v, err := checkpoint.LoadVerifier(vpath)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(filepath.Dir(path), "c.checkpoints.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("signer key mode %v, want 0600", fi.Mode().Perm())
	}
	es, err := checkpoint.Read("log", data, v, checkpoint.DefaultOrigin)
	if err != nil || len(es) != 3 || es[2].Batch != 3 || es[2].Record != 3 {
		t.Fatalf("clean log: %+v %v", es, err)
	}
	if n, err := checkpoint.LastBatch(path); err != nil || n != 3 {
		t.Fatalf("LastBatch %d %v, want 3", n, err)
	}

	kind := func(err error) string {
		var le *checkpoint.LogError
		if !errors.As(err, &le) {
			return "not a LogError: " + error.Error(err)
		}
		return le.Kind
	}
	// Cut anywhere inside the last record: truncated, the first two kept.
	last := bytes.LastIndex(data[:len(data)-2], []byte("\n\n"))
	last = bytes.LastIndex(data[:last], []byte("\n\n")) + 2
	for cut := last + 1; cut < len(data); cut += 7 {
		es, err := checkpoint.Read("log", data[:cut], v, checkpoint.DefaultOrigin)
		if kind(err) != checkpoint.LogTruncated || len(es) != 2 {
			t.Fatalf("cut at %d of %d: %d entries, %v", cut, len(data), len(es), err)
		}
	}
	// An edited batch number: the signature fails.
	edited := bytes.Replace(data, []byte("\n2\n"), []byte("\n7\n"), 1)
	if es, err := checkpoint.Read("log", edited, v, ""); kind(err) != checkpoint.LogBadSig || len(es) != 1 {
		t.Fatalf("edited record: %d entries, %v", len(es), err)
	}
	// Another key.
	other, _ := writeLog(t, 1)
	_, ovpath := checkpoint.KeyPaths(other)
	ov, _ := checkpoint.LoadVerifier(ovpath)
	if _, err := checkpoint.Read("log", data, ov, ""); kind(err) != checkpoint.LogForeign {
		t.Fatalf("foreign key: %v", err)
	}
	// Another origin.
	if _, err := checkpoint.Read("log", data, v, "elsewhere"); kind(err) != checkpoint.LogOrigin {
		t.Fatalf("other origin: %v", err)
	}
	if _, err := checkpoint.ReadFile(filepath.Join(t.TempDir(), "none"), v, ""); kind(err) != checkpoint.LogMissing {
		t.Fatalf("missing: %v", err)
	}
}

// The writer writes a checkpoint only when the head moved, records the
// start in the store once, and its log verifies.
func TestWriter(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		log := filepath.Join(t.TempDir(), "x", "c.checkpoints")
		w, err := checkpoint.NewWriter(st, checkpoint.Config{Log: log, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if wrote, err := w.Write(ctx); err != nil || !wrote {
			t.Fatalf("first checkpoint: %v %v", wrote, err)
		}
		if wrote, err := w.Write(ctx); err != nil || wrote {
			t.Fatalf("an unmoved head is not checkpointed again: %v %v", wrote, err)
		}
		started, err := st.CheckpointStarted(ctx)
		if err != nil || started.KeyName != checkpoint.DefaultKeyName || started.Log != log {
			t.Fatalf("start record: %+v %v", started, err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Reopened on an unmoved head, it writes nothing.
		w, err = checkpoint.NewWriter(st, checkpoint.Config{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		if w.LastLogged() != 0 {
			t.Fatalf("last logged %d, want 0", w.LastLogged())
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		_, vpath := checkpoint.KeyPaths(log)
		v, _ := checkpoint.LoadVerifier(vpath)
		es, err := checkpoint.ReadFile(log, v, checkpoint.DefaultOrigin)
		if err != nil || len(es) != 1 || es[0].Batch != 0 || es[0].AuditHash != nil {
			t.Fatalf("log: %+v %v", es, err)
		}
	})
}
