// Package sqlite is the SQLite driver of the store, on modernc.org/sqlite
// (pure Go, no cgo).
//
// The database runs in WAL mode with synchronous=FULL, so a CommitBatch that
// returned nil survives a power cut. SQLite has one writer at a time, so the
// Store keeps a single write connection and a separate pool of read-only
// connections; in WAL mode readers never block the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store backed by one SQLite database file.
type Store struct {
	// Reader holds the reads both drivers share, on r.
	*reads.Reader

	path string
	w    *sql.DB // exactly one connection: every write goes through it
	r    *sql.DB // read-only connections

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared on w, reused by every CommitBatch
}

var _ store.Store = (*Store)(nil)

// Connection settings. Both handles wait up to 5s for a lock held by
// another process instead of failing at once with SQLITE_BUSY.
//
// The writer also gets:
//   - synchronous=FULL: the WAL is synced at every commit, so an
//     acknowledged batch survives power loss (NORMAL could lose the last
//     transactions);
//   - a 64 MiB page cache, so the indexes a batch touches stay in memory;
//   - temp_store=memory, so statement journals never hit a temporary file;
//   - a checkpoint every 8000 WAL pages (32 MiB) instead of 1000: pages that
//     every batch rewrites (hot accounts, index edges) are copied back once
//     per checkpoint, not once per few batches;
//   - BEGIN IMMEDIATE, so a write transaction takes the write lock up front
//     rather than failing to upgrade from a read lock.
const (
	writeParams = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)&_pragma=temp_store(memory)" +
		"&_pragma=wal_autocheckpoint(8000)&_txlock=immediate"
	readParams = "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=query_only(1)"
)

// Open opens (creating it and its directory on first run) the database at
// path and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	// The driver reads everything after the first '?' as parameters.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}

	w, err := sql.Open("sqlite", path+"?"+writeParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// One connection, never recycled: its prepared statements stay warm and
	// no second connection can ever contend for the write lock.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	s := &Store{path: path, w: w, stmts: make(map[string]*sql.Stmt)}
	if err := s.init(ctx); err != nil {
		w.Close()
		return nil, err
	}

	r, err := sql.Open("sqlite", path+"?"+readParams)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.r, s.Reader = r, reads.New(r, reads.SQLite)
	return s, nil
}

// init checks the write connection's settings and runs the migrations.
func (s *Store) init(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	// WAL is refused on some filesystems; silently running in rollback-journal
	// mode would let readers block the ledger writer.
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: %s: journal_mode is %q, want wal", s.path, mode)
	}
	var syncMode int
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if syncMode < 2 {
		return fmt.Errorf("sqlite: %s: synchronous is %d, want FULL (2)", s.path, syncMode)
	}

	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, fsys)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	return nil
}

// Driver returns "sqlite".
func (s *Store) Driver() string { return "sqlite" }

// Path returns the database file name.
func (s *Store) Path() string { return s.path }

// Close closes both connection pools.
func (s *Store) Close() error {
	s.mu.Lock()
	for k, st := range s.stmts {
		st.Close()
		delete(s.stmts, k)
	}
	s.mu.Unlock()
	var err error
	if s.r != nil {
		err = s.r.Close()
	}
	return errors.Join(err, s.w.Close())
}

// ExecRaw runs one SQL statement on the write connection. It exists for
// tests that must reach past the Store API, e.g. to check that the audit log
// refuses UPDATE; the application never calls it.
func (s *Store) ExecRaw(ctx context.Context, query string) error {
	_, err := s.w.ExecContext(ctx, query)
	return err
}

// cached returns a statement stmt prepared before. It never touches the
// pool, so it is safe inside a write transaction.
func (s *Store) cached(query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	return nil, errors.New("sqlite: internal error: statement not prepared before the transaction")
}

// stmt returns the statement for query prepared on the write connection,
// preparing it on first use. It must not be called inside a write
// transaction: preparing needs the pool's only connection.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.w.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

// Times are stored as unix microseconds: the precision PostgreSQL keeps, and
// wide enough that the zero time.Time round-trips too.
func toDB(t time.Time) int64 { return t.UnixMicro() }

func fromDB(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullBytes stores an empty byte slice as NULL; it reads back as nil.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// constraint classifies a constraint violation as store.ErrConflict
// (unique or primary key) or store.ErrNotFound (a foreign key naming a
// missing row), so callers can test for them with errors.Is.
func constraint(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
		// A value the schema refuses belongs to its row, not to the batch.
		return fmt.Errorf("%w: %w", store.ErrBadValue, err)
	}
	return err
}

// placeholders returns "(?,?,…),(?,?,…)…": rows groups of cols markers.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	var b strings.Builder
	b.Grow(rows * (len(one) + 1))
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(one)
	}
	return b.String()
}
