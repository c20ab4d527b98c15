// Package drivers opens a store.Store from a DSN, choosing the driver by the
// DSN's scheme. It is separate from package store so that code which only
// uses the interface does not link both database drivers.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
)

// Open opens the store named by dsn:
//
//	sqlite://./citycard-data/citycard.db   a file, relative to the working directory
//	sqlite:///var/lib/citycard/citycard.db an absolute path
//	postgres://user:pass@host:5432/db?sslmode=disable (or postgresql://…)
//
// The SQLite file and its directory are created on first use; either way the
// schema is migrated to the current version.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	return open(ctx, dsn, sqlite.Open, postgres.Open)
}

// OpenExisting opens the store named by dsn, as Open does, but never
// creates nor migrates it: for tools that check a store (ledger verify,
// ledger checkpoint), a store that does not exist is an error wrapping
// store.ErrNoStore, not a new empty one.
func OpenExisting(ctx context.Context, dsn string) (store.Store, error) {
	return open(ctx, dsn, sqlite.OpenExisting, postgres.OpenExisting)
}

// open picks the driver by the DSN's scheme and opens it with lite or pg.
func open[L, P store.Store](ctx context.Context, dsn string,
	lite func(context.Context, string) (L, error), pg func(context.Context, string) (P, error)) (store.Store, error) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok {
		return nil, errors.New("drivers: database DSN has no scheme: want sqlite://PATH or postgres://URL")
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		path, err := sqlitePath(rest)
		if err != nil {
			return nil, err
		}
		return nilIfErr(lite(ctx, path))
	case "postgres", "postgresql":
		return nilIfErr(pg(ctx, dsn))
	}
	// The rest of the DSN may hold a password: only the scheme is echoed.
	return nil, fmt.Errorf("drivers: unknown database scheme %q: want sqlite://PATH or postgres://URL", scheme)
}

// nilIfErr keeps a failed open from returning a typed nil pointer inside a
// non-nil interface.
func nilIfErr[S store.Store](s S, err error) (store.Store, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SQLitePath returns the file of a sqlite:// DSN, and false for any other.
func SQLitePath(dsn string) (string, bool) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || !strings.EqualFold(scheme, "sqlite") {
		return "", false
	}
	path, err := sqlitePath(rest)
	return path, err == nil
}

// sqlitePath takes what follows "sqlite:" and returns the file path.
func sqlitePath(rest string) (string, error) {
	path := strings.TrimPrefix(rest, "//")
	switch {
	case path == "":
		return "", errors.New("drivers: sqlite DSN has no file path")
	case path == ":memory:" || strings.HasPrefix(path, "file::memory:") || strings.Contains(path, "mode=memory"):
		// Each connection would get its own empty database.
		return "", errors.New("drivers: in-memory SQLite is not supported: give a file path")
	case strings.Contains(path, "?"):
		return "", errors.New("drivers: sqlite DSN parameters are not supported: the driver sets its own")
	}
	return path, nil
}
