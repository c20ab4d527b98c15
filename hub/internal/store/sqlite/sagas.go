package sqlite

import (
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

const sagaCols = `operator, key, kind, state, data, version, created_at, updated_at`

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
