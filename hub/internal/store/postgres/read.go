package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

type scanner interface{ Scan(dest ...any) error }

// query runs a read and calls fn for every row, streaming: rows are not
// collected first.
func (s *Store) query(ctx context.Context, fn func(pgx.Rows) error, query string, args ...any) error {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// collect runs a read and scans every row with scan.
func collect[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	err := s.query(ctx, func(rows pgx.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, query, args...)
	return out, err
}

// pgLimit turns a limit of zero or less into NULL, which is LIMIT ALL.
func pgLimit(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	l := int64(limit)
	return &l
}
