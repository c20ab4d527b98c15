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

// OpenExisting opens the store named by dsn, as Open does, but never
// creates nor migrates it: for tools that check a store (ledger verify,
// ledger checkpoint), a store that does not exist is an error wrapping
// store.ErrNoStore, not a new empty one.
func OpenExisting(ctx context.Context, dsn string) (store.Store, error) {
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
		return sqlite.OpenExisting(ctx, path)
	case "postgres", "postgresql":
		return postgres.OpenExisting(ctx, dsn)
	}
	return nil, fmt.Errorf("drivers: unknown database scheme %q: want sqlite://PATH or postgres://URL", scheme)
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
