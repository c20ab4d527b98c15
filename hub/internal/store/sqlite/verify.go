package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// metaCheckpoints is the meta key holding the store.CheckpointStart record.
const metaCheckpoints = "checkpoints_started"

// verifyPage bounds each page of the verify streams, so a long stream never
// holds one read transaction open for its whole length.
const verifyPage = 1000

// OpenExisting opens the database at path for reading and checking, without
// creating or migrating anything: a file that does not exist, or that holds
// no CityCard schema, is an error wrapping store.ErrNoStore, and a schema
// older than this binary's is refused.
func OpenExisting(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: bad database path %q", path)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sqlite: %s does not exist: %w", path, store.ErrNoStore)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: %s is not a file: %w", path, store.ErrNoStore)
	}
	// SQLite would take an empty file as a new database and write to it.
	if fi.Size() == 0 {
		return nil, fmt.Errorf("sqlite: %s holds no CityCard store: %w", path, store.ErrNoStore)
	}
	// mode=rw: the driver must not create the file if it vanished since.
	w, err := sql.Open("sqlite", "file:"+path+"?mode=rw&"+writeParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	s := &Store{path: path, w: w, stmts: make(map[string]*sql.Stmt)}
	if err := s.checkSchema(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", "file:"+path+"?mode=ro&"+readParams)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r, s.Reader = r, reads.New(r, reads.SQLite)
	return s, nil
}

// checkSchema refuses a database that is not a CityCard store, or one whose
// schema is older than the newest migration this binary carries.
func (s *Store) checkSchema(ctx context.Context) error {
	var have sql.NullInt64
	err := s.w.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&have)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return fmt.Errorf("sqlite: %s holds no CityCard store: %w", s.path, store.ErrNoStore)
		}
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	want, err := newestMigration(migrations)
	if err != nil {
		return err
	}
	if !have.Valid || have.Int64 == 0 {
		return fmt.Errorf("sqlite: %s holds no CityCard store: %w", s.path, store.ErrNoStore)
	}
	if have.Int64 < want {
		return fmt.Errorf("sqlite: %s has schema version %d, this citycard needs %d: start the hub on it once to migrate it",
			s.path, have.Int64, want)
	}
	return nil
}

// newestMigration returns the version of the highest numbered migration.
func newestMigration(fsys fs.FS) (int64, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return 0, err
	}
	var top int64
	for _, n := range names {
		v, _, _ := strings.Cut(path.Base(n), "_")
		if i, err := strconv.ParseInt(v, 10, 64); err == nil && i > top {
			top = i
		}
	}
	return top, nil
}

// IdempotencyRecords streams every idempotency record by operator and key.
func (s *Store) IdempotencyRecords(ctx context.Context, fn func(store.IdemRecord) error) error {
	var op, key string
	for first := true; ; first = false {
		page, err := collect(ctx, s, scanIdem, `SELECT `+idemCols+` FROM idempotency
			WHERE ? OR (operator, key) > (?, ?) ORDER BY operator, key LIMIT ?`, first, op, key, verifyPage)
		if err != nil {
			return fmt.Errorf("sqlite: idempotency records: %w", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
			op, key = r.Operator, r.Key
		}
		if len(page) < verifyPage {
			return nil
		}
	}
}

// AllSagas streams every saga by operator and key.
func (s *Store) AllSagas(ctx context.Context, fn func(store.Saga) error) error {
	var op, key string
	for first := true; ; first = false {
		page, err := collect(ctx, s, scanSaga, `SELECT `+sagaCols+` FROM sagas
			WHERE ? OR (operator, key) > (?, ?) ORDER BY operator, key LIMIT ?`, first, op, key, verifyPage)
		if err != nil {
			return fmt.Errorf("sqlite: sagas: %w", err)
		}
		for _, g := range page {
			if err := fn(g); err != nil {
				return err
			}
			op, key = g.Operator, g.Key
		}
		if len(page) < verifyPage {
			return nil
		}
	}
}

// CheckpointStarted returns the record of the first checkpoint.
func (s *Store) CheckpointStarted(ctx context.Context) (store.CheckpointStart, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaCheckpoints).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return store.CheckpointStart{}, fmt.Errorf("sqlite: checkpoint start: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.CheckpointStart{}, fmt.Errorf("sqlite: checkpoint start: %w", err)
	}
	var c store.CheckpointStart
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return c, fmt.Errorf("sqlite: checkpoint start: %w", err)
	}
	return c, nil
}

// StartCheckpoints records c unless a record is stored, and returns the
// stored one.
func (s *Store) StartCheckpoints(ctx context.Context, c store.CheckpointStart) (store.CheckpointStart, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return c, err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`,
		metaCheckpoints, string(b)); err != nil {
		return c, fmt.Errorf("sqlite: start checkpoints: %w", err)
	}
	return s.CheckpointStarted(ctx)
}

// LockWriter takes an exclusive flock on PATH.lock without waiting. The
// kernel drops it when the process dies, so a crashed hub never leaves the
// store locked.
func (s *Store) LockWriter(ctx context.Context) (func() error, error) {
	f, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: writer lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite: %s: %w", s.path, store.ErrLocked)
		}
		return nil, fmt.Errorf("sqlite: writer lock: %w", err)
	}
	return func() error {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return f.Close()
	}, nil
}
