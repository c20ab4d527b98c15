package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// OpenExisting connects to the store at url for reading and checking,
// without creating or migrating anything: a schema that holds no CityCard
// store is an error wrapping store.ErrNoStore, and one older than this
// binary's migrations is refused.
func OpenExisting(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	return OpenExistingConfig(ctx, cfg)
}

// OpenExistingConfig is OpenExisting for a pool configuration built by the
// caller.
func OpenExistingConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := newStore(pool)
	if err := s.checkSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// checkSchema finds the schema and refuses one that holds no CityCard store
// or an older schema version.
func (s *Store) checkSchema(ctx context.Context) error {
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	if schema == nil {
		return fmt.Errorf("postgres: no schema of the search_path exists: %w", store.ErrNoStore)
	}
	s.schema = *schema
	var have *int64
	err := s.pool.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&have)
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "42P01" {
		return fmt.Errorf("postgres: schema %s holds no CityCard store: %w", s.schema, store.ErrNoStore)
	}
	if err != nil {
		return fmt.Errorf("postgres: schema %s: %w", s.schema, err)
	}
	if have == nil || *have == 0 {
		return fmt.Errorf("postgres: schema %s holds no CityCard store: %w", s.schema, store.ErrNoStore)
	}
	want, err := reads.NewestMigration(migrations)
	if err != nil {
		return err
	}
	if *have < want {
		return fmt.Errorf("postgres: schema %s has version %d, this citycard needs %d: start the hub on it once to migrate it",
			s.schema, *have, want)
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
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
		reads.MetaCheckpoints, string(b)); err != nil {
		return c, fmt.Errorf("postgres: start checkpoints: %w", err)
	}
	return s.CheckpointStarted(ctx)
}

// LockWriter takes a session advisory lock, named by the schema, on a
// connection of its own held until release: the server drops it when that
// connection ends, so a crashed hub never leaves the store locked.
func (s *Store) LockWriter(ctx context.Context) (func() error, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("postgres: writer lock: %w", err)
	}
	key := lockKey("citycard.writer:" + s.schema)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgres: writer lock: %w", err)
	}
	if !got {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgres: schema %s: %w", s.schema, store.ErrLocked)
	}
	return func() error {
		// Closing the connection releases the lock too.
		return conn.Close(context.Background())
	}, nil
}
