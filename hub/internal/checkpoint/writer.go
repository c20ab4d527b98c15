package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/citycard/citycard/hub/internal/store"
)

// Defaults of a hub's checkpoints.
const (
	DefaultEvery    = 1000             // batches
	DefaultInterval = 10 * time.Second // at most this long between checkpoints of a moving head
)

// Config tells a hub where and how often to write checkpoints.
type Config struct {
	// Log is the checkpoint log file; required.
	Log string
	// SignerKey and VerifierKey are the key files (default KeyPaths(Log));
	// a missing signer key is generated with its verifier on first use.
	SignerKey, VerifierKey string
	// KeyName names a generated key (default DefaultKeyName).
	KeyName string
	// Origin is the checkpoints' origin line (default DefaultOrigin).
	Origin string
	// Every and Interval: a checkpoint is written after Every committed
	// batches or Interval, whichever comes first, if the head moved.
	Every    int64
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock of the time line (default time.Now).
	Now func() time.Time
}

// Writer signs checkpoints of a store's head and appends them to a Sink.
type Writer struct {
	cfg    Config
	st     store.Store
	sink   Sink
	signer note.Signer
	vkey   string
	kick   chan struct{}

	mu      sync.Mutex
	last    int64 // the batch of the last checkpoint written, -1 for none
	started bool  // the store records that checkpointing started
	counted int64 // batches committed since the last kick
}

// NewWriter opens the log and the keys of cfg for st.
func NewWriter(st store.Store, cfg Config) (*Writer, error) {
	if cfg.Log == "" {
		return nil, errors.New("checkpoint: no log file")
	}
	ds, dv := KeyPaths(cfg.Log)
	if cfg.SignerKey == "" {
		cfg.SignerKey = ds
	}
	if cfg.VerifierKey == "" {
		cfg.VerifierKey = dv
	}
	if cfg.KeyName == "" {
		cfg.KeyName = DefaultKeyName
	}
	if cfg.Origin == "" {
		cfg.Origin = DefaultOrigin
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	signer, vkey, err := LoadOrCreateSigner(cfg.SignerKey, cfg.VerifierKey, cfg.KeyName)
	if err != nil {
		return nil, err
	}
	last, err := LastBatch(cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read log: %w", err)
	}
	sink, err := OpenFileLog(cfg.Log)
	if err != nil {
		return nil, err
	}
	return &Writer{cfg: cfg, st: st, sink: sink, signer: signer, vkey: vkey, last: last,
		kick: make(chan struct{}, 1)}, nil
}

// LastLogged is the batch of the last checkpoint in the log when the
// writer opened it, or -1.
func (w *Writer) LastLogged() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Committed counts one committed batch; every Every batches it wakes Run.
// It never blocks, so the ledger's committer may call it.
func (w *Writer) Committed() {
	w.mu.Lock()
	w.counted++
	full := w.counted >= w.cfg.Every
	if full {
		w.counted = 0
	}
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Run writes checkpoints until ctx ends: every Interval, or sooner when
// Committed counted Every batches. A failed write is logged and tried again
// at the next turn.
func (w *Writer) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
		if _, err := w.Write(ctx); err != nil && ctx.Err() == nil {
			w.cfg.Logger.Error("checkpoint: write failed", "err", err)
		}
	}
}

// Write signs the store's current head and appends it, unless the last
// checkpoint already names that batch. It reports whether it wrote one.
func (w *Writer) Write(ctx context.Context) (bool, error) {
	h, err := w.st.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("checkpoint: read head: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if h.LastBatch == w.last {
		return false, nil
	}
	c := Checkpoint{Origin: w.cfg.Origin, Batch: h.LastBatch, Hash: h.LastHash, Time: w.cfg.Now().UTC(),
		Audit: h.LastAudit, AuditHash: h.AuditHash}
	signed, err := Sign(c, w.signer)
	if err != nil {
		return false, fmt.Errorf("checkpoint: sign: %w", err)
	}
	if !w.started {
		// Recorded before the first append: a store that says it started
		// and has no log is then always a missing log, never a new store.
		got, err := w.st.StartCheckpoints(ctx, store.CheckpointStart{KeyName: w.signer.Name(), Verifier: w.vkey,
			Log: w.cfg.Log, Batch: c.Batch, At: c.Time})
		if err != nil {
			return false, err
		}
		if got.Verifier != w.vkey {
			w.cfg.Logger.Warn("checkpoint: the store's checkpoints were started with another key",
				"recorded", got.Verifier, "signing", w.vkey)
		}
		w.started = true
	}
	if err := w.sink.Append(ctx, signed); err != nil {
		return false, err
	}
	w.last = h.LastBatch
	return true, nil
}

// Close writes a last checkpoint of the head (call it after the ledger
// writer closed) and closes the log.
func (w *Writer) Close(ctx context.Context) error {
	_, err := w.Write(ctx)
	return errors.Join(err, w.sink.Close())
}

// Unsigned is c as a note with no signature, for `ledger checkpoint`
// without the signer key: its text with the blank line that ends it.
func Unsigned(c Checkpoint) []byte { return []byte(c.Text()) }
