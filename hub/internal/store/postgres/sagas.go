package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// CreateSaga inserts g, or returns the saga stored under its key.
func (s *Store) CreateSaga(ctx context.Context, g store.Saga) (store.Saga, bool, error) {
	if err := g.Check(); err != nil {
		return store.Saga{}, false, fmt.Errorf("postgres: create saga %q: %w", g.Key, err)
	}
	g.Version, g.UpdatedAt = 1, g.CreatedAt
	created, err := reads.ScanSaga(s.pool.QueryRow(ctx, `INSERT INTO sagas (operator, key, kind, state, data, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5::text::json, $6, $7, $8) ON CONFLICT (operator, key) DO NOTHING RETURNING `+reads.SagaCols,
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
	up, err := reads.ScanSaga(s.pool.QueryRow(ctx, `UPDATE sagas SET state = $1, data = $2::text::json, version = version + 1,
		updated_at = $3 WHERE operator = $4 AND key = $5 AND version = $6 RETURNING `+reads.SagaCols,
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
