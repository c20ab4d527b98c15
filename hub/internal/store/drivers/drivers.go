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
		return sqlite.Open(ctx, path)
	case "postgres", "postgresql":
		return postgres.Open(ctx, dsn)
	}
	// The rest of the DSN may hold a password: only the scheme is echoed.
	return nil, fmt.Errorf("drivers: unknown database scheme %q: want sqlite://PATH or postgres://URL", scheme)
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
