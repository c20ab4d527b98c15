package sqlite

import (
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// nullString stores "" as NULL, for unique columns that may be unset.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AddOperator inserts an operator; a taken id, name or token hash is
// store.ErrConflict.
func (s *Store) AddOperator(ctx context.Context, op store.Operator) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO operators (id, name, role, token_hash, disabled, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		op.ID, op.Name, op.Role, nullString(op.TokenHash), boolInt(op.Disabled), toDB(op.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: add operator %q: %w", op.Name, constraint(err))
	}
	return nil
}

// SetOperatorToken replaces an operator's token hash.
func (s *Store) SetOperatorToken(ctx context.Context, id, tokenHash string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE operators SET token_hash = ? WHERE id = ?`, nullString(tokenHash), id)
	if err != nil {
		return fmt.Errorf("sqlite: set token of operator %q: %w", id, constraint(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: set token of operator %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// AppendAudit appends one entry, chained to the row before it; its id,
// PrevHash and Hash are assigned by the store.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	if err := s.appendAudit(ctx, tx, []store.AuditEntry{e}, false); err != nil {
		tx.Rollback()
		return fmt.Errorf("sqlite: append audit: %w", constraint(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	return nil
}

// AddMerchant inserts a merchant; a taken id is store.ErrConflict.
func (s *Store) AddMerchant(ctx context.Context, m store.Merchant) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO merchants (`+reads.MerchantCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		m.ID, m.Name, m.MCC, m.FeeRateBps, m.SettlementAccount, toDB(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: add merchant %q: %w", m.ID, constraint(err))
	}
	return nil
}

// AddTerminal inserts a terminal: a taken id is store.ErrConflict, an
// unknown merchant store.ErrNotFound.
func (s *Store) AddTerminal(ctx context.Context, t store.Terminal) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO terminals (id, merchant, created_at) VALUES (?, ?, ?)`,
		t.ID, t.Merchant, toDB(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: add terminal %q: %w", t.ID, constraint(err))
	}
	return nil
}

// PutProduct inserts a product or replaces its definition; the first
// CreatedAt is kept.
func (s *Store) PutProduct(ctx context.Context, p store.Product) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO products (code, definition, created_at) VALUES (?, ?, ?)
		ON CONFLICT (code) DO UPDATE SET definition = excluded.definition`,
		p.Code, string(p.Definition), toDB(p.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: put product %q: %w", p.Code, err)
	}
	return nil
}
