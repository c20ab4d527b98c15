// Package postgres is the PostgreSQL driver of the store, on pgx/v5 and
// pgxpool.
//
// Tables are created unqualified, in the first schema of the connection's
// search_path, so several ledgers can share a database (tests give each its
// own schema; see OpenTestSchema).
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store backed by a PostgreSQL connection pool.
type Store struct {
	// Reader holds the reads both drivers share, on db.
	*reads.Reader

	pool   *pgxpool.Pool
	db     *sql.DB // the pool through pgx's stdlib adapter, for Reader
	schema string
	// outbox writes a batch's messages inside its transaction; nil
	// ignores them. Set before the ledger writer starts.
	outbox outboxWriter
}

var _ store.Store = (*Store)(nil)

// Pool implements store.SharedDatabase: the store's connection pool,
// whose connections use the store's schema.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN, as pgx parses it) and brings its schema up to date.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open for a pool configuration built by the caller, e.g. one
// with search_path in ConnConfig.RuntimeParams.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := newStore(pool)
	if err := s.init(ctx, cfg.ConnConfig); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// newStore wraps pool.
func newStore(pool *pgxpool.Pool) *Store {
	db := stdlib.OpenDBFromPool(pool)
	return &Store{Reader: reads.New(db, reads.PostgreSQL), pool: pool, db: db}
}

// lockKey derives an advisory lock key from a name.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// init finds the schema and runs the migrations under a per-schema advisory
// lock, so that hubs starting together do not migrate the same schema twice.
func (s *Store) init(ctx context.Context, cc *pgx.ConnConfig) error {
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	if schema == nil {
		return errors.New("postgres: no schema of the search_path exists")
	}
	s.schema = *schema

	// The lock lives on a connection of its own, so migrating works whatever
	// the pool size.
	lc, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer lc.Close(context.WithoutCancel(ctx))
	key := lockKey("citycard.migrate:" + s.schema)
	if _, err := lc.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	// Closing lc releases the lock too; unlocking first just frees it sooner.
	defer lc.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)

	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate schema %s: %w", s.schema, err)
	}
	return nil
}

// Driver returns "postgres".
func (s *Store) Driver() string { return "postgres" }

// Schema returns the schema the tables live in.
func (s *Store) Schema() string { return s.schema }

// Close closes the pool.
func (s *Store) Close() error {
	err := s.db.Close()
	s.pool.Close()
	return err
}

// ExecRaw runs one SQL statement. It exists for tests that must reach past
// the Store API, e.g. to check that the audit log refuses UPDATE; the
// application never calls it.
func (s *Store) ExecRaw(ctx context.Context, query string) error {
	_, err := s.pool.Exec(ctx, query)
	return err
}

// constraint classifies a constraint violation as store.ErrConflict
// (unique) or store.ErrNotFound (a foreign key naming a missing row), so
// callers can test for them with errors.Is.
func constraint(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case "23503": // foreign_key_violation
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case "23502", "23514": // not_null_violation, check_violation
		return fmt.Errorf("%w: %w", store.ErrBadValue, err)
	}
	// Class 22, data exception: a value out of range, text the encoding
	// cannot hold, a string too long for its column.
	if strings.HasPrefix(pe.Code, "22") {
		return fmt.Errorf("%w: %w", store.ErrBadValue, err)
	}
	return err
}

// nullBytes stores an empty byte slice as NULL; it reads back as nil.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nullString stores "" as NULL, for unique columns that may be unset.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
