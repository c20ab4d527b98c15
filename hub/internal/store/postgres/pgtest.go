package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenTestSchema creates a fresh schema with a random name in the database
// at url and opens a Store whose tables live in it. drop closes the store and
// drops the schema with everything in it. It is meant for tests: each gets
// an empty ledger in a shared database, and parallel tests do not see each
// other.
func OpenTestSchema(ctx context.Context, url string) (s *Store, drop func(), err error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "citycard_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{schema}.Sanitize()

	if err := execOnce(ctx, cfg.ConnConfig, `CREATE SCHEMA `+ident); err != nil {
		return nil, nil, fmt.Errorf("postgres: create test schema: %w", err)
	}
	dropSchema := func() {
		execOnce(context.Background(), cfg.ConnConfig, `DROP SCHEMA `+ident+` CASCADE`)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	// Tests open many stores side by side; keep each one's share of the
	// server's connections small.
	cfg.MaxConns = 4
	s, err = OpenConfig(ctx, cfg)
	if err != nil {
		dropSchema()
		return nil, nil, err
	}
	return s, func() { s.Close(); dropSchema() }, nil
}

// execOnce runs one statement on a connection of its own.
func execOnce(ctx context.Context, cc *pgx.ConnConfig, sql string) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
