package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

const sagaCols = `operator, key, kind, state, data::text, version, created_at, updated_at`

func scanSaga(sc scanner) (store.Saga, error) {
	var (
		g    store.Saga
		data string
	)
	if err := sc.Scan(&g.Operator, &g.Key, &g.Kind, &g.State, &data, &g.Version, &g.CreatedAt, &g.UpdatedAt); err != nil {
		return g, err
	}
	g.Data, g.CreatedAt, g.UpdatedAt = []byte(data), g.CreatedAt.UTC(), g.UpdatedAt.UTC()
	return g, nil
}

// CreateSaga inserts g, or returns the saga stored under its key.
func (s *Store) CreateSaga(ctx context.Context, g store.Saga) (store.Saga, bool, error) {
	if err := g.Check(); err != nil {
		return store.Saga{}, false, fmt.Errorf("postgres: create saga %q: %w", g.Key, err)
	}
	g.Version, g.UpdatedAt = 1, g.CreatedAt
	created, err := scanSaga(s.pool.QueryRow(ctx, `INSERT INTO sagas (operator, key, kind, state, data, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5::text::json, $6, $7, $8) ON CONFLICT (operator, key) DO NOTHING RETURNING `+sagaCols,
		g.Operator, g.Key, g.Kind, g.State, string(g.Data), g.Version, g.CreatedAt, g.UpdatedAt))
	if err == nil {
		return created, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Saga{}, false, fmt.Errorf("postgres: create saga %q: %w", g.Key, err)
	}
	old, err := s.GetSaga(ctx, g.Operator, g.Key)
	return old, false, err
}

// UpdateSaga writes g's state and data over the version it read.
func (s *Store) UpdateSaga(ctx context.Context, g store.Saga) (store.Saga, error) {
	if err := g.Check(); err != nil {
		return store.Saga{}, fmt.Errorf("postgres: update saga %q: %w", g.Key, err)
	}
	up, err := scanSaga(s.pool.QueryRow(ctx, `UPDATE sagas SET state = $1, data = $2::text::json, version = version + 1,
		updated_at = $3 WHERE operator = $4 AND key = $5 AND version = $6 RETURNING `+sagaCols,
		g.State, string(g.Data), g.UpdatedAt, g.Operator, g.Key, g.Version))
	if err == nil {
		return up, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Saga{}, fmt.Errorf("postgres: update saga %q: %w", g.Key, err)
	}
	if _, err := s.GetSaga(ctx, g.Operator, g.Key); err != nil {
		return store.Saga{}, err
	}
	return store.Saga{}, fmt.Errorf("postgres: update saga %q: version %d is stale: %w", g.Key, g.Version, store.ErrConflict)
}

// GetSaga returns one saga.
func (s *Store) GetSaga(ctx context.Context, operator, key string) (store.Saga, error) {
	g, err := scanSaga(s.pool.QueryRow(ctx, `SELECT `+sagaCols+` FROM sagas WHERE operator = $1 AND key = $2`, operator, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Saga{}, fmt.Errorf("postgres: saga %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Saga{}, fmt.Errorf("postgres: saga %q: %w", key, err)
	}
	return g, nil
}

// OpenSagas lists sagas still running or compensating, oldest first.
func (s *Store) OpenSagas(ctx context.Context, limit int) ([]store.Saga, error) {
	out, err := collect(ctx, s, scanSaga, `SELECT `+sagaCols+` FROM sagas
		WHERE state IN ('running', 'compensating') ORDER BY created_at, operator, key LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: open sagas: %w", err)
	}
	return out, nil
}

// SagasCreated lists the sagas of kind created in [from, to).
func (s *Store) SagasCreated(ctx context.Context, kind string, from, to time.Time) ([]store.Saga, error) {
	out, err := collect(ctx, s, scanSaga, `SELECT `+sagaCols+` FROM sagas
		WHERE kind = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, operator, key`, kind, from, to)
	if err != nil {
		return nil, fmt.Errorf("postgres: sagas of %s: %w", kind, err)
	}
	return out, nil
}

// LinkBankCard links or re-links a bank card to a city card.
func (s *Store) LinkBankCard(ctx context.Context, l store.LinkedBankCard) error {
	if err := l.Check(); err != nil {
		return fmt.Errorf("postgres: link bank card to %q: %w", l.Card, err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO linked_bank_cards (card, token, masked_pan, last4, linked_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (card) DO UPDATE SET token = excluded.token,
		masked_pan = excluded.masked_pan, last4 = excluded.last4, linked_at = excluded.linked_at`,
		l.Card, l.Token, l.MaskedPAN, l.Last4, l.LinkedAt)
	if err != nil {
		return fmt.Errorf("postgres: link bank card to %q: %w", l.Card, constraint(err))
	}
	return nil
}

// UnlinkBankCard removes a card's link.
func (s *Store) UnlinkBankCard(ctx context.Context, card string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM linked_bank_cards WHERE card = $1`, card)
	if err != nil {
		return fmt.Errorf("postgres: unlink bank card of %q: %w", card, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: card %q has no linked bank card: %w", card, store.ErrNotFound)
	}
	return nil
}

// LinkedBankCard returns a card's link.
func (s *Store) LinkedBankCard(ctx context.Context, card string) (store.LinkedBankCard, error) {
	var l store.LinkedBankCard
	err := s.pool.QueryRow(ctx, `SELECT card, token, masked_pan, last4, linked_at FROM linked_bank_cards WHERE card = $1`,
		card).Scan(&l.Card, &l.Token, &l.MaskedPAN, &l.Last4, &l.LinkedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("postgres: card %q has no linked bank card: %w", card, store.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("postgres: linked bank card of %q: %w", card, err)
	}
	l.LinkedAt = l.LinkedAt.UTC()
	return l, nil
}
