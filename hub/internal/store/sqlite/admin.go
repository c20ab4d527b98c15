package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

const operatorCols = `id, name, role, coalesce(token_hash, ''), disabled, created_at`

func scanOperator(sc scanner) (store.Operator, error) {
	var (
		o  store.Operator
		at int64
	)
	err := sc.Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &o.Disabled, &at)
	o.CreatedAt = fromDB(at)
	return o, err
}

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

// OperatorByTokenHash finds the operator holding a token.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash string) (store.Operator, error) {
	if hash == "" {
		return store.Operator{}, fmt.Errorf("sqlite: operator by empty token: %w", store.ErrNotFound)
	}
	return s.operator(ctx, "token", `token_hash = ?`, hash)
}

// OperatorByName finds an operator by name.
func (s *Store) OperatorByName(ctx context.Context, name string) (store.Operator, error) {
	return s.operator(ctx, name, `name = ?`, name)
}

func (s *Store) operator(ctx context.Context, what, where string, arg any) (store.Operator, error) {
	o, err := scanOperator(s.r.QueryRowContext(ctx, `SELECT `+operatorCols+` FROM operators WHERE `+where, arg))
	if err == sql.ErrNoRows {
		return store.Operator{}, fmt.Errorf("sqlite: operator %q: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("sqlite: operator %q: %w", what, err)
	}
	return o, nil
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

// ListAudit returns up to limit entries with id above afterID, by id. A
// limit of zero or less means no limit.
func (s *Store) ListAudit(ctx context.Context, afterID int64, limit int) ([]store.AuditEntry, error) {
	out, err := collect(ctx, s, func(sc scanner) (store.AuditEntry, error) {
		var (
			e  store.AuditEntry
			at int64
		)
		err := sc.Scan(&e.ID, &at, &e.Operator, &e.Role, &e.Action, &e.Target, &e.Remote, &e.Outcome, &e.Detail,
			&e.PrevHash, &e.Hash)
		e.At = fromDB(at)
		return e, err
	}, `SELECT id, at, operator, role, action, target, remote, outcome, detail, prev_hash, hash FROM audit_log
		WHERE id > ? ORDER BY id LIMIT ?`, afterID, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	return out, nil
}

const merchantCols = `id, name, mcc, fee_rate_bps, settlement_account, created_at`

func scanMerchant(sc scanner) (store.Merchant, error) {
	var (
		m  store.Merchant
		at int64
	)
	err := sc.Scan(&m.ID, &m.Name, &m.MCC, &m.FeeRateBps, &m.SettlementAccount, &at)
	m.CreatedAt = fromDB(at)
	return m, err
}

// AddMerchant inserts a merchant; a taken id is store.ErrConflict.
func (s *Store) AddMerchant(ctx context.Context, m store.Merchant) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO merchants (`+merchantCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		m.ID, m.Name, m.MCC, m.FeeRateBps, m.SettlementAccount, toDB(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: add merchant %q: %w", m.ID, constraint(err))
	}
	return nil
}

// GetMerchant returns one merchant or an error wrapping store.ErrNotFound.
func (s *Store) GetMerchant(ctx context.Context, id string) (store.Merchant, error) {
	m, err := scanMerchant(s.r.QueryRowContext(ctx, `SELECT `+merchantCols+` FROM merchants WHERE id = ?`, id))
	if err == sql.ErrNoRows {
		return store.Merchant{}, fmt.Errorf("sqlite: merchant %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Merchant{}, fmt.Errorf("sqlite: merchant %q: %w", id, err)
	}
	return m, nil
}

// ListMerchants lists every merchant by id.
func (s *Store) ListMerchants(ctx context.Context) ([]store.Merchant, error) {
	out, err := collect(ctx, s, scanMerchant, `SELECT `+merchantCols+` FROM merchants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list merchants: %w", err)
	}
	return out, nil
}

func scanTerminal(sc scanner) (store.Terminal, error) {
	var (
		t  store.Terminal
		at int64
	)
	err := sc.Scan(&t.ID, &t.Merchant, &at)
	t.CreatedAt = fromDB(at)
	return t, err
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

// GetTerminal returns one terminal or an error wrapping store.ErrNotFound.
func (s *Store) GetTerminal(ctx context.Context, id string) (store.Terminal, error) {
	t, err := scanTerminal(s.r.QueryRowContext(ctx, `SELECT id, merchant, created_at FROM terminals WHERE id = ?`, id))
	if err == sql.ErrNoRows {
		return store.Terminal{}, fmt.Errorf("sqlite: terminal %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Terminal{}, fmt.Errorf("sqlite: terminal %q: %w", id, err)
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
			`SELECT id, merchant, created_at FROM terminals WHERE merchant = ? ORDER BY id`, merchant)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: list terminals: %w", err)
	}
	return out, nil
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

// ListProducts lists every product by code.
func (s *Store) ListProducts(ctx context.Context) ([]store.Product, error) {
	out, err := collect(ctx, s, func(sc scanner) (store.Product, error) {
		var (
			p   store.Product
			def string
			at  int64
		)
		err := sc.Scan(&p.Code, &def, &at)
		p.Definition, p.CreatedAt = []byte(def), fromDB(at)
		return p, err
	}, `SELECT code, definition, created_at FROM products ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list products: %w", err)
	}
	return out, nil
}
