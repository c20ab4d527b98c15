// Package reads holds the store's read queries once for both drivers, over
// database/sql: the SQLite driver gives it its read-only pool, the
// PostgreSQL driver its pgx pool through pgx's stdlib adapter. A Dialect
// carries what differs between the two: placeholders, how a query matches
// many keys, and how a time is stored. Row types differ too (PostgreSQL's
// smallints and booleans, SQLite's integers); database/sql converts them
// to the Go fields, and Time scans either kind of time column.
//
// The drivers embed a Reader, so its methods are theirs; only writes and
// the commit paths stay per driver.
package reads

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// Dialect is what a driver's SQL does its own way.
type Dialect struct {
	// Name names the driver in errors: "sqlite" or "postgres".
	Name string
	// Numbered placeholders ($1, $2, …) replace the queries' "?".
	Numbered bool
	// Arrays passes a set of keys as one array per column (= ANY, unnest);
	// without, keys go in IN lists of at most MaxKeys values.
	Arrays bool
	// MaxKeys bounds the values of one IN list, below SQLite's variable
	// limit.
	MaxKeys int
	// Time is a time as its column takes it.
	Time func(time.Time) any
}

// PostgreSQL is the dialect of the postgres driver: timestamptz columns,
// arrays for key sets.
var PostgreSQL = Dialect{Name: "postgres", Numbered: true, Arrays: true, Time: func(t time.Time) any { return t }}

// SQLite is the dialect of the sqlite driver: times as integer
// microseconds since the Unix epoch, IN lists for key sets.
var SQLite = Dialect{Name: "sqlite", MaxKeys: 500, Time: func(t time.Time) any { return t.UnixMicro() }}

// Reader runs the store's reads on one database.
type Reader struct {
	db *sql.DB
	d  Dialect

	rebound sync.Map // query with "?" → query with "$n", for numbered dialects
}

// New returns a Reader of db in dialect d.
func New(db *sql.DB, d Dialect) *Reader { return &Reader{db: db, d: d} }

// errorf prefixes an error with the driver's name.
func (r *Reader) errorf(format string, args ...any) error {
	return fmt.Errorf(r.d.Name+": "+format, args...)
}

// sql rewrites q's placeholders for the dialect. Queries hold no "?" but
// their placeholders.
func (r *Reader) sql(q string) string {
	if !r.d.Numbered {
		return q
	}
	if v, ok := r.rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	r.rebound.Store(q, b.String())
	return b.String()
}

// limit is a LIMIT argument: zero or less means no limit.
func limit(n int) int64 {
	if n <= 0 {
		return math.MaxInt64
	}
	return int64(n)
}

// Time scans a time column of either driver into t, in UTC: a timestamptz
// arrives as a time.Time, SQLite's integer as microseconds.
func Time(t *time.Time) sql.Scanner { return timeDest{t: t} }

type timeDest struct{ t *time.Time }

func (d timeDest) Scan(v any) error {
	switch v := v.(type) {
	case time.Time:
		*d.t = v.UTC()
	case int64:
		*d.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time column holds %T", v)
	}
	return nil
}

// nullTime scans a nullable time column into *t, nil for NULL.
type nullTime struct{ t **time.Time }

func (d nullTime) Scan(v any) error {
	if v == nil {
		*d.t = nil
		return nil
	}
	var t time.Time
	if err := (timeDest{&t}).Scan(v); err != nil {
		return err
	}
	*d.t = &t
	return nil
}

type scanner interface{ Scan(dest ...any) error }

// query runs a read and calls fn for every row, streaming.
func (r *Reader) query(ctx context.Context, fn func(*sql.Rows) error, q string, args ...any) error {
	rows, err := r.db.QueryContext(ctx, r.sql(q), args...)
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
func collect[T any](ctx context.Context, r *Reader, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	var out []T
	err := r.query(ctx, func(rows *sql.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, q, args...)
	return out, err
}

// get reads one row; no row is store.ErrNotFound.
func get[T any](ctx context.Context, r *Reader, scan func(scanner) (T, error), q string, args ...any) (T, error) {
	v, err := scan(r.db.QueryRowContext(ctx, r.sql(q), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return v, store.ErrNotFound
	}
	return v, err
}

// keys is a set of keys to match: one column of values per key part, each
// a []string or an []int64, all as long.
type keys struct {
	cols  []string // the columns matched
	types []string // their PostgreSQL types, for unnest
	vals  []any
	n     int
}

func stringKeys(col string, vs []string) keys {
	return keys{cols: []string{col}, types: []string{"text"}, vals: []any{vs}, n: len(vs)}
}

func int64Keys(col string, vs []int64) keys {
	return keys{cols: []string{col}, types: []string{"bigint"}, vals: []any{vs}, n: len(vs)}
}

func at(col any, i int) any {
	switch c := col.(type) {
	case []string:
		return c[i]
	case []int64:
		return c[i]
	}
	panic(fmt.Sprintf("reads: key column of %T", col))
}

// load runs q, whose "{keys}" is where the match of ks goes, for every key
// of ks: once with arrays, once per IN list of at most MaxKeys values
// otherwise. A key asked for twice yields its row once.
func load[T any](ctx context.Context, r *Reader, ks keys, scan func(scanner) (T, error), q string) ([]T, error) {
	if ks.n == 0 {
		return nil, nil
	}
	if r.d.Arrays {
		var cond string
		if len(ks.cols) == 1 {
			cond = ks.cols[0] + " = ANY(?)"
		} else {
			casts := make([]string, len(ks.types))
			for i, t := range ks.types {
				casts[i] = "?::" + t + "[]"
			}
			// A semi-join, so a key asked for twice still yields one row.
			cond = "(" + strings.Join(ks.cols, ", ") + ") IN (SELECT * FROM unnest(" + strings.Join(casts, ", ") + "))"
		}
		return collect(ctx, r, scan, strings.Replace(q, "{keys}", cond, 1), ks.vals...)
	}
	per := len(ks.cols)
	step := max(1, r.d.MaxKeys/per)
	if ks.n > step {
		ks = ks.unique()
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", per), ",") + ")"
	var out []T
	for lo := 0; lo < ks.n; lo += step {
		hi := min(lo+step, ks.n)
		args := make([]any, 0, (hi-lo)*per)
		var list string
		if per == 1 {
			list = ks.cols[0] + " IN (" + strings.TrimSuffix(strings.Repeat("?,", hi-lo), ",") + ")"
		} else {
			list = "(" + strings.Join(ks.cols, ", ") + ") IN (VALUES " +
				strings.TrimSuffix(strings.Repeat(one+",", hi-lo), ",") + ")"
		}
		for i := lo; i < hi; i++ {
			for _, c := range ks.vals {
				args = append(args, at(c, i))
			}
		}
		got, err := collect(ctx, r, scan, strings.Replace(q, "{keys}", list, 1), args...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// unique returns ks with each key once, in first-seen order: keys go in
// several IN lists, and a key repeated across two of them would otherwise
// come back twice.
func (ks keys) unique() keys {
	seen := make(map[string]bool, ks.n)
	idx := make([]int, 0, ks.n)
	var b strings.Builder
	for i := 0; i < ks.n; i++ {
		b.Reset()
		for _, c := range ks.vals {
			fmt.Fprintf(&b, "%v\x00", at(c, i))
		}
		if k := b.String(); !seen[k] {
			seen[k] = true
			idx = append(idx, i)
		}
	}
	if len(idx) == ks.n {
		return ks
	}
	out := ks
	out.vals = make([]any, len(ks.vals))
	for j, c := range ks.vals {
		switch c := c.(type) {
		case []string:
			v := make([]string, len(idx))
			for k, i := range idx {
				v[k] = c[i]
			}
			out.vals[j] = v
		case []int64:
			v := make([]int64, len(idx))
			for k, i := range idx {
				v[k] = c[i]
			}
			out.vals[j] = v
		}
	}
	out.n = len(idx)
	return out
}
