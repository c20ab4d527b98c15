package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

const operatorCols = `id, name, role, coalesce(token_hash, ''), disabled, created_at`

func scanOperator(sc scanner) (store.Operator, error) {
	var o store.Operator
	err := sc.Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &o.Disabled, &o.CreatedAt)
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

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

// OperatorByTokenHash finds the operator holding a token.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash string) (store.Operator, error) {
	if hash == "" {
		return store.Operator{}, fmt.Errorf("postgres: operator by empty token: %w", store.ErrNotFound)
	}
	return s.operator(ctx, "token", `token_hash = $1`, hash)
}

// OperatorByName finds an operator by name.
func (s *Store) OperatorByName(ctx context.Context, name string) (store.Operator, error) {
	return s.operator(ctx, name, `name = $1`, name)
}

func (s *Store) operator(ctx context.Context, what, where string, arg any) (store.Operator, error) {
	o, err := scanOperator(s.pool.QueryRow(ctx, `SELECT `+operatorCols+` FROM operators WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Operator{}, fmt.Errorf("postgres: operator %q: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("postgres: operator %q: %w", what, err)
	}
	return o, nil
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

// ListAudit returns up to limit entries with id above afterID, by id. A
// limit of zero or less means no limit.
func (s *Store) ListAudit(ctx context.Context, afterID int64, limit int) ([]store.AuditEntry, error) {
	out, err := collect(ctx, s, func(sc scanner) (store.AuditEntry, error) {
		var e store.AuditEntry
		err := sc.Scan(&e.ID, &e.At, &e.Operator, &e.Role, &e.Action, &e.Target, &e.Remote, &e.Outcome, &e.Detail,
			&e.PrevHash, &e.Hash)
		e.At = e.At.UTC()
		return e, err
	}, `SELECT id, at, operator, role, action, target, remote, outcome, detail, prev_hash, hash FROM audit_log
		WHERE id > $1 ORDER BY id LIMIT $2`, afterID, pgLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", err)
	}
	return out, nil
}

const merchantCols = `id, name, mcc, fee_rate_bps, settlement_account, created_at`

func scanMerchant(sc scanner) (store.Merchant, error) {
	var m store.Merchant
	err := sc.Scan(&m.ID, &m.Name, &m.MCC, &m.FeeRateBps, &m.SettlementAccount, &m.CreatedAt)
	m.CreatedAt = m.CreatedAt.UTC()
	return m, err
}

// AddMerchant inserts a merchant; a taken id is store.ErrConflict.
func (s *Store) AddMerchant(ctx context.Context, m store.Merchant) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO merchants (`+merchantCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		m.ID, m.Name, m.MCC, m.FeeRateBps, m.SettlementAccount, m.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: add merchant %q: %w", m.ID, constraint(err))
	}
	return nil
}

// GetMerchant returns one merchant or an error wrapping store.ErrNotFound.
func (s *Store) GetMerchant(ctx context.Context, id string) (store.Merchant, error) {
	m, err := scanMerchant(s.pool.QueryRow(ctx, `SELECT `+merchantCols+` FROM merchants WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Merchant{}, fmt.Errorf("postgres: merchant %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Merchant{}, fmt.Errorf("postgres: merchant %q: %w", id, err)
	}
	return m, nil
}

// ListMerchants lists every merchant by id.
func (s *Store) ListMerchants(ctx context.Context) ([]store.Merchant, error) {
	out, err := collect(ctx, s, scanMerchant, `SELECT `+merchantCols+` FROM merchants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list merchants: %w", err)
	}
	return out, nil
}

func scanTerminal(sc scanner) (store.Terminal, error) {
	var t store.Terminal
	err := sc.Scan(&t.ID, &t.Merchant, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, err
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

// GetTerminal returns one terminal or an error wrapping store.ErrNotFound.
func (s *Store) GetTerminal(ctx context.Context, id string) (store.Terminal, error) {
	t, err := scanTerminal(s.pool.QueryRow(ctx, `SELECT id, merchant, created_at FROM terminals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Terminal{}, fmt.Errorf("postgres: terminal %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Terminal{}, fmt.Errorf("postgres: terminal %q: %w", id, err)
	}
	return t, nil
}

// ListTerminals lists a merchant's terminals by id, or every terminal when
// merchant is "".
func (s *Store) ListTerminals(ctx context.Context, merchant string) ([]store.Terminal, error) {
	var (
		out []store.Terminal
		err error
	)
	if merchant == "" {
		out, err = collect(ctx, s, scanTerminal, `SELECT id, merchant, created_at FROM terminals ORDER BY id`)
	} else {
		out, err = collect(ctx, s, scanTerminal,
			`SELECT id, merchant, created_at FROM terminals WHERE merchant = $1 ORDER BY id`, merchant)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list terminals: %w", err)
	}
	return out, nil
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

// ListProducts lists every product by code.
func (s *Store) ListProducts(ctx context.Context) ([]store.Product, error) {
	out, err := collect(ctx, s, func(sc scanner) (store.Product, error) {
		var (
			p   store.Product
			def string
		)
		err := sc.Scan(&p.Code, &def, &p.CreatedAt)
		p.Definition, p.CreatedAt = []byte(def), p.CreatedAt.UTC()
		return p, err
	}, `SELECT code, definition::text, created_at FROM products ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list products: %w", err)
	}
	return out, nil
}
