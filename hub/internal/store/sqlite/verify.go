package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

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
	want, err := reads.NewestMigration(migrations)
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

// StartCheckpoints records c unless a record is stored, and returns the
// stored one.
func (s *Store) StartCheckpoints(ctx context.Context, c store.CheckpointStart) (store.CheckpointStart, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return c, err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`,
		reads.MetaCheckpoints, string(b)); err != nil {
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
