package reads

import (
	"context"
	"errors"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// SagaCols are the sagas' columns as ScanSaga reads them, the data as
// text.
const SagaCols = `operator, key, kind, state, CAST(data AS text), version, created_at, updated_at`

// ScanSaga reads a saga selected as SagaCols, from a query of either
// driver's own (a PostgreSQL RETURNING) as well as from the Reader's.
func ScanSaga(sc interface{ Scan(dest ...any) error }) (store.Saga, error) {
	var (
		g    store.Saga
		data string
	)
	if err := sc.Scan(&g.Operator, &g.Key, &g.Kind, &g.State, &data, &g.Version, Time(&g.CreatedAt),
		Time(&g.UpdatedAt)); err != nil {
		return g, err
	}
	g.Data = []byte(data)
	return g, nil
}

func scanSaga(sc scanner) (store.Saga, error) { return ScanSaga(sc) }

// GetSaga returns one saga or an error wrapping store.ErrNotFound.
func (r *Reader) GetSaga(ctx context.Context, operator, key string) (store.Saga, error) {
	g, err := get(ctx, r, scanSaga, `SELECT `+SagaCols+` FROM sagas WHERE operator = ? AND key = ?`, operator, key)
	if err != nil {
		return store.Saga{}, r.errorf("saga %q: %w", key, err)
	}
	return g, nil
}

// OpenSagas lists up to limit sagas still running or compensating, oldest
// first.
func (r *Reader) OpenSagas(ctx context.Context, limit int) ([]store.Saga, error) {
	out, err := collect(ctx, r, scanSaga, `SELECT `+SagaCols+` FROM sagas
		WHERE state IN ('running', 'compensating') ORDER BY created_at, operator, key LIMIT ?`, limit)
	if err != nil {
		return nil, r.errorf("open sagas: %w", err)
	}
	return out, nil
}

// SagasCreated lists the sagas of kind created in [from, to), oldest
// first.
func (r *Reader) SagasCreated(ctx context.Context, kind string, from, to time.Time) ([]store.Saga, error) {
	out, err := collect(ctx, r, scanSaga, `SELECT `+SagaCols+` FROM sagas
		WHERE kind = ? AND created_at >= ? AND created_at < ? ORDER BY created_at, operator, key`,
		kind, r.d.Time(from), r.d.Time(to))
	if err != nil {
		return nil, r.errorf("sagas of %s: %w", kind, err)
	}
	return out, nil
}

// LinkedBankCard returns a card's link or an error wrapping
// store.ErrNotFound.
func (r *Reader) LinkedBankCard(ctx context.Context, card string) (store.LinkedBankCard, error) {
	l, err := get(ctx, r, func(sc scanner) (store.LinkedBankCard, error) {
		var l store.LinkedBankCard
		err := sc.Scan(&l.Card, &l.Token, &l.MaskedPAN, &l.Last4, Time(&l.LinkedAt))
		return l, err
	}, `SELECT card, token, masked_pan, last4, linked_at FROM linked_bank_cards WHERE card = ?`, card)
	if errors.Is(err, store.ErrNotFound) {
		return l, r.errorf("card %q has no linked bank card: %w", card, err)
	}
	if err != nil {
		return l, r.errorf("linked bank card of %q: %w", card, err)
	}
	return l, nil
}
