package reads

import (
	"context"

	"github.com/citycard/citycard/hub/internal/store"
)

const operatorCols = `id, name, role, coalesce(token_hash, ''), disabled, created_at`

func scanOperator(sc scanner) (store.Operator, error) {
	var o store.Operator
	err := sc.Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &o.Disabled, Time(&o.CreatedAt))
	return o, err
}

// OperatorByTokenHash finds the operator holding a token.
func (r *Reader) OperatorByTokenHash(ctx context.Context, hash string) (store.Operator, error) {
	if hash == "" {
		return store.Operator{}, r.errorf("operator by empty token: %w", store.ErrNotFound)
	}
	return r.operator(ctx, "token", `token_hash = ?`, hash)
}

// OperatorByName finds an operator by name.
func (r *Reader) OperatorByName(ctx context.Context, name string) (store.Operator, error) {
	return r.operator(ctx, name, `name = ?`, name)
}

func (r *Reader) operator(ctx context.Context, what, where string, arg any) (store.Operator, error) {
	o, err := get(ctx, r, scanOperator, `SELECT `+operatorCols+` FROM operators WHERE `+where, arg)
	if err != nil {
		return store.Operator{}, r.errorf("operator %q: %w", what, err)
	}
	return o, nil
}

// ListAudit returns up to limit entries with id above afterID, by id. A
// limit of zero or less means no limit.
func (r *Reader) ListAudit(ctx context.Context, afterID int64, n int) ([]store.AuditEntry, error) {
	out, err := collect(ctx, r, func(sc scanner) (store.AuditEntry, error) {
		var e store.AuditEntry
		err := sc.Scan(&e.ID, Time(&e.At), &e.Operator, &e.Role, &e.Action, &e.Target, &e.Remote, &e.Outcome,
			&e.Detail, &e.PrevHash, &e.Hash)
		return e, err
	}, `SELECT id, at, operator, role, action, target, remote, outcome, detail, prev_hash, hash FROM audit_log
		WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit(n))
	if err != nil {
		return nil, r.errorf("list audit: %w", err)
	}
	return out, nil
}

// MerchantCols are the merchants' columns, in the order the drivers insert
// them.
const MerchantCols = `id, name, mcc, fee_rate_bps, settlement_account, created_at`

func scanMerchant(sc scanner) (store.Merchant, error) {
	var m store.Merchant
	err := sc.Scan(&m.ID, &m.Name, &m.MCC, &m.FeeRateBps, &m.SettlementAccount, Time(&m.CreatedAt))
	return m, err
}

// GetMerchant returns one merchant or an error wrapping store.ErrNotFound.
func (r *Reader) GetMerchant(ctx context.Context, id string) (store.Merchant, error) {
	m, err := get(ctx, r, scanMerchant, `SELECT `+MerchantCols+` FROM merchants WHERE id = ?`, id)
	if err != nil {
		return store.Merchant{}, r.errorf("merchant %q: %w", id, err)
	}
	return m, nil
}

// ListMerchants lists every merchant by id.
func (r *Reader) ListMerchants(ctx context.Context) ([]store.Merchant, error) {
	out, err := collect(ctx, r, scanMerchant, `SELECT `+MerchantCols+` FROM merchants ORDER BY id`)
	if err != nil {
		return nil, r.errorf("list merchants: %w", err)
	}
	return out, nil
}

func scanTerminal(sc scanner) (store.Terminal, error) {
	var t store.Terminal
	err := sc.Scan(&t.ID, &t.Merchant, Time(&t.CreatedAt))
	return t, err
}

// GetTerminal returns one terminal or an error wrapping store.ErrNotFound.
func (r *Reader) GetTerminal(ctx context.Context, id string) (store.Terminal, error) {
	t, err := get(ctx, r, scanTerminal, `SELECT id, merchant, created_at FROM terminals WHERE id = ?`, id)
	if err != nil {
		return store.Terminal{}, r.errorf("terminal %q: %w", id, err)
	}
	return t, nil
}

// ListTerminals lists a merchant's terminals by id, or every terminal when
// merchant is "".
func (r *Reader) ListTerminals(ctx context.Context, merchant string) ([]store.Terminal, error) {
	q, args := `SELECT id, merchant, created_at FROM terminals ORDER BY id`, []any(nil)
	if merchant != "" {
		q, args = `SELECT id, merchant, created_at FROM terminals WHERE merchant = ? ORDER BY id`, []any{merchant}
	}
	out, err := collect(ctx, r, scanTerminal, q, args...)
	if err != nil {
		return nil, r.errorf("list terminals: %w", err)
	}
	return out, nil
}

// ListProducts lists every product by code.
func (r *Reader) ListProducts(ctx context.Context) ([]store.Product, error) {
	out, err := collect(ctx, r, func(sc scanner) (store.Product, error) {
		var (
			p   store.Product
			def string
		)
		err := sc.Scan(&p.Code, &def, Time(&p.CreatedAt))
		p.Definition = []byte(def)
		return p, err
	}, `SELECT code, CAST(definition AS text), created_at FROM products ORDER BY code`)
	if err != nil {
		return nil, r.errorf("list products: %w", err)
	}
	return out, nil
}
