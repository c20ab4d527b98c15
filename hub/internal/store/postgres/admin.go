package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// AddOperator inserts an operator; a taken id, name or token hash is
// store.ErrConflict.
func (s *Store) AddOperator(ctx context.Context, op store.Operator) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO operators (id, name, role, token_hash, disabled, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		op.ID, op.Name, op.Role, nullString(op.TokenHash), op.Disabled, op.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: add operator %q: %w", op.Name, constraint(err))
	}
	return nil
}

// SetOperatorToken replaces an operator's token hash.
func (s *Store) SetOperatorToken(ctx context.Context, id, tokenHash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE operators SET token_hash = $1 WHERE id = $2`, nullString(tokenHash), id)
	if err != nil {
		return fmt.Errorf("postgres: set token of operator %q: %w", id, constraint(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set token of operator %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// AppendAudit appends one entry, chained to the row before it; its id,
// PrevHash and Hash are assigned by the store.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return appendAudit(ctx, tx, []store.AuditEntry{e})
	})
	if err != nil {
		return fmt.Errorf("postgres: append audit: %w", constraint(err))
	}
	return nil
}

// AddMerchant inserts a merchant; a taken id is store.ErrConflict.
func (s *Store) AddMerchant(ctx context.Context, m store.Merchant) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO merchants (`+reads.MerchantCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		m.ID, m.Name, m.MCC, m.FeeRateBps, m.SettlementAccount, m.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: add merchant %q: %w", m.ID, constraint(err))
	}
	return nil
}

// AddTerminal inserts a terminal: a taken id is store.ErrConflict, an
// unknown merchant store.ErrNotFound.
func (s *Store) AddTerminal(ctx context.Context, t store.Terminal) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO terminals (id, merchant, created_at) VALUES ($1, $2, $3)`,
		t.ID, t.Merchant, t.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: add terminal %q: %w", t.ID, constraint(err))
	}
	return nil
}

// PutProduct inserts a product or replaces its definition; the first
// CreatedAt is kept.
func (s *Store) PutProduct(ctx context.Context, p store.Product) error {
	// Sent as text so the json column keeps the bytes as they are.
	_, err := s.pool.Exec(ctx, `INSERT INTO products (code, definition, created_at) VALUES ($1, $2::text::json, $3)
		ON CONFLICT (code) DO UPDATE SET definition = excluded.definition`,
		p.Code, string(p.Definition), p.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: put product %q: %w", p.Code, err)
	}
	return nil
}
