package reads

import (
	"context"
	"encoding/json"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/citycard/citycard/hub/internal/store"
)

// MetaCheckpoints is the meta key holding the store.CheckpointStart record.
const MetaCheckpoints = "checkpoints_started"

// verifyPage bounds each page of the verify streams, so a long stream never
// holds one read transaction open for its whole length.
const verifyPage = 1000

// IdempotencyRecords streams every idempotency record by operator and key.
func (r *Reader) IdempotencyRecords(ctx context.Context, fn func(store.IdemRecord) error) error {
	if err := pages(ctx, r, scanIdem, `SELECT `+IdemCols+` FROM idempotency`,
		func(v store.IdemRecord) (string, string) { return v.Operator, v.Key }, fn); err != nil {
		return r.errorf("idempotency records: %w", err)
	}
	return nil
}

// AllSagas streams every saga by operator and key.
func (r *Reader) AllSagas(ctx context.Context, fn func(store.Saga) error) error {
	if err := pages(ctx, r, scanSaga, `SELECT `+SagaCols+` FROM sagas`,
		func(g store.Saga) (string, string) { return g.Operator, g.Key }, fn); err != nil {
		return r.errorf("sagas: %w", err)
	}
	return nil
}

// pages streams the rows of from (a SELECT of a table keyed by operator
// and key) in key order, verifyPage rows per statement.
func pages[T any](ctx context.Context, r *Reader, scan func(scanner) (T, error), from string,
	key func(T) (string, string), fn func(T) error) error {
	var op, k string
	for first := true; ; first = false {
		page, err := collect(ctx, r, scan, from+` WHERE ? OR (operator, key) > (?, ?) ORDER BY operator, key LIMIT ?`,
			first, op, k, verifyPage)
		if err != nil {
			return err
		}
		for _, v := range page {
			if err := fn(v); err != nil {
				return err
			}
			op, k = key(v)
		}
		if len(page) < verifyPage {
			return nil
		}
	}
}

// CheckpointStarted returns the record of the first checkpoint, or an
// error wrapping store.ErrNotFound when no hub ever signed one.
func (r *Reader) CheckpointStarted(ctx context.Context) (store.CheckpointStart, error) {
	v, err := get(ctx, r, func(sc scanner) (string, error) {
		var v string
		return v, sc.Scan(&v)
	}, `SELECT value FROM meta WHERE key = ?`, MetaCheckpoints)
	if err != nil {
		return store.CheckpointStart{}, r.errorf("checkpoint start: %w", err)
	}
	var c store.CheckpointStart
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return c, r.errorf("checkpoint start: %w", err)
	}
	return c, nil
}

// NewestMigration returns the version of the highest numbered migration in
// fsys's migrations folder, which a driver's schema check compares with
// the version its database records.
func NewestMigration(fsys fs.FS) (int64, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return 0, err
	}
	var top int64
	for _, n := range names {
		v, _, _ := strings.Cut(path.Base(n), "_")
		if i, err := strconv.ParseInt(v, 10, 64); err == nil && i > top {
			top = i
		}
	}
	return top, nil
}
