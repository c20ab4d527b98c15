package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// inChunk bounds the keys in one IN list, far below SQLite's variable limit
// and small enough to keep statement preparation cheap.
const inChunk = 500

type scanner interface{ Scan(dest ...any) error }

// query runs a read and calls fn for every row.
func (s *Store) query(ctx context.Context, fn func(*sql.Rows) error, query string, args ...any) error {
	rows, err := s.r.QueryContext(ctx, query, args...)
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
	err := s.query(ctx, func(rows *sql.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, query, args...)
	return out, err
}

// sqlLimit turns a limit of zero or less into -1, which SQLite reads as no
// limit.
func sqlLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

// loadIn runs query once per chunk of keys; query has one %s where the
// chunk's "?,?,…" list goes and per is the number of arguments per key.
func loadIn[K, T any](ctx context.Context, s *Store, keys []K, per int, args func(K) []any,
	scan func(scanner) (T, error), query string) ([]T, error) {
	var out []T
	step := inChunk / per
	for lo := 0; lo < len(keys); lo += step {
		chunk := keys[lo:min(lo+step, len(keys))]
		vals := make([]any, 0, len(chunk)*per)
		for _, k := range chunk {
			vals = append(vals, args(k)...)
		}
		list := inList(len(chunk))
		if per > 1 {
			list = "VALUES " + placeholders(len(chunk), per)
		}
		got, err := collect(ctx, s, scan, fmt.Sprintf(query, list), vals...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func one[K any](k K) []any { return []any{k} }
