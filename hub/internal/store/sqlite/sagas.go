package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

const sagaCols = `operator, key, kind, state, data, version, created_at, updated_at`

func scanSaga(sc scanner) (store.Saga, error) {
	var (
		g                store.Saga
		data             string
		created, updated int64
	)
	if err := sc.Scan(&g.Operator, &g.Key, &g.Kind, &g.State, &data, &g.Version, &created, &updated); err != nil {
		return g, err
	}
	g.Data, g.CreatedAt, g.UpdatedAt = []byte(data), fromDB(created), fromDB(updated)
	return g, nil
}

// CreateSaga inserts g, or returns the saga stored under its key.
func (s *Store) CreateSaga(ctx context.Context, g store.Saga) (store.Saga, bool, error) {
	if err := g.Check(); err != nil {
		return store.Saga{}, false, fmt.Errorf("sqlite: create saga %q: %w", g.Key, err)
	}
	g.Version, g.UpdatedAt = 1, g.CreatedAt
	res, err := s.w.ExecContext(ctx, `INSERT INTO sagas (`+sagaCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (operator, key) DO NOTHING`,
		g.Operator, g.Key, g.Kind, g.State, string(g.Data), g.Version, toDB(g.CreatedAt), toDB(g.UpdatedAt))
	if err != nil {
		return store.Saga{}, false, fmt.Errorf("sqlite: create saga %q: %w", g.Key, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		g.CreatedAt, g.UpdatedAt = fromDB(toDB(g.CreatedAt)), fromDB(toDB(g.UpdatedAt))
		return g, true, nil
	}
	old, err := s.GetSaga(ctx, g.Operator, g.Key)
	return old, false, err
}

// UpdateSaga writes g's state and data over the version it read.
func (s *Store) UpdateSaga(ctx context.Context, g store.Saga) (store.Saga, error) {
	if err := g.Check(); err != nil {
		return store.Saga{}, fmt.Errorf("sqlite: update saga %q: %w", g.Key, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE sagas SET state = ?, data = ?, version = version + 1, updated_at = ?
		WHERE operator = ? AND key = ? AND version = ?`,
		g.State, string(g.Data), toDB(g.UpdatedAt), g.Operator, g.Key, g.Version)
	if err != nil {
		return store.Saga{}, fmt.Errorf("sqlite: update saga %q: %w", g.Key, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		g.Version++
		g.UpdatedAt = fromDB(toDB(g.UpdatedAt))
		return g, nil
	}
	if _, err := s.GetSaga(ctx, g.Operator, g.Key); err != nil {
		return store.Saga{}, err
	}
	return store.Saga{}, fmt.Errorf("sqlite: update saga %q: version %d is stale: %w", g.Key, g.Version, store.ErrConflict)
}

// GetSaga returns one saga.
func (s *Store) GetSaga(ctx context.Context, operator, key string) (store.Saga, error) {
	g, err := scanSaga(s.w.QueryRowContext(ctx, `SELECT `+sagaCols+` FROM sagas WHERE operator = ? AND key = ?`, operator, key))
	if err == sql.ErrNoRows {
		return store.Saga{}, fmt.Errorf("sqlite: saga %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Saga{}, fmt.Errorf("sqlite: saga %q: %w", key, err)
	}
	return g, nil
}

// OpenSagas lists sagas still running or compensating, oldest first.
func (s *Store) OpenSagas(ctx context.Context, limit int) ([]store.Saga, error) {
	out, err := collect(ctx, s, scanSaga, `SELECT `+sagaCols+` FROM sagas
		WHERE state IN ('running', 'compensating') ORDER BY created_at, operator, key LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open sagas: %w", err)
	}
	return out, nil
}

// SagasCreated lists the sagas of kind created in [from, to).
func (s *Store) SagasCreated(ctx context.Context, kind string, from, to time.Time) ([]store.Saga, error) {
	out, err := collect(ctx, s, scanSaga, `SELECT `+sagaCols+` FROM sagas
		WHERE kind = ? AND created_at >= ? AND created_at < ? ORDER BY created_at, operator, key`, kind, toDB(from), toDB(to))
	if err != nil {
		return nil, fmt.Errorf("sqlite: sagas of %s: %w", kind, err)
	}
	return out, nil
}

// LinkBankCard links or re-links a bank card to a city card.
func (s *Store) LinkBankCard(ctx context.Context, l store.LinkedBankCard) error {
	if err := l.Check(); err != nil {
		return fmt.Errorf("sqlite: link bank card to %q: %w", l.Card, err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO linked_bank_cards (card, token, masked_pan, last4, linked_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (card) DO UPDATE SET token = excluded.token,
		masked_pan = excluded.masked_pan, last4 = excluded.last4, linked_at = excluded.linked_at`,
		l.Card, l.Token, l.MaskedPAN, l.Last4, toDB(l.LinkedAt))
	if err != nil {
		return fmt.Errorf("sqlite: link bank card to %q: %w", l.Card, constraint(err))
	}
	return nil
}

// UnlinkBankCard removes a card's link.
func (s *Store) UnlinkBankCard(ctx context.Context, card string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM linked_bank_cards WHERE card = ?`, card)
	if err != nil {
		return fmt.Errorf("sqlite: unlink bank card of %q: %w", card, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: card %q has no linked bank card: %w", card, store.ErrNotFound)
	}
	return nil
}

// LinkedBankCard returns a card's link.
func (s *Store) LinkedBankCard(ctx context.Context, card string) (store.LinkedBankCard, error) {
	var (
		l  store.LinkedBankCard
		at int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT card, token, masked_pan, last4, linked_at FROM linked_bank_cards WHERE card = ?`,
		card).Scan(&l.Card, &l.Token, &l.MaskedPAN, &l.Last4, &at)
	if err == sql.ErrNoRows {
		return l, fmt.Errorf("sqlite: card %q has no linked bank card: %w", card, store.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("sqlite: linked bank card of %q: %w", card, err)
	}
	l.LinkedAt = fromDB(at)
	return l, nil
}
