package reads

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// Columns of the ledger's tables, in the order the scanners read them.
const (
	AccountCols = `id, code, kind, currency, card, purse, constrained, negative_limit,
	debits_posted, credits_posted, debits_pending, credits_pending, created_at`
	CardCols = `number, product, status, holder_name, id_type, id_number, phone, pin_hash, pin_tries,
	deposit, currency, replaced_by, replaces, issued_at, updated_at`
	HoldCols     = `id, card, merchant, amount, currency, captured, status, expires_at, updated_at`
	IdemCols     = `operator, key, request_hash, status, response, at`
	TransferCols = `id, batch, kind, currency, card, pending, ref, amount, channel, merchant, terminal,
	operator, memo, at`
)

func scanAccount(sc scanner) (store.Account, error) {
	var a store.Account
	err := sc.Scan(&a.ID, &a.Code, &a.Kind, &a.Currency, &a.Card, &a.Purse, &a.Constrained, &a.NegativeLimit,
		&a.DebitsPosted, &a.CreditsPosted, &a.DebitsPending, &a.CreditsPending, Time(&a.CreatedAt))
	return a, err
}

func scanCard(sc scanner) (store.Card, error) {
	var c store.Card
	err := sc.Scan(&c.Number, &c.Product, &c.Status, &c.HolderName, &c.IDType, &c.IDNumber, &c.Phone,
		&c.PinHash, &c.PinTries, &c.Deposit, &c.Currency, &c.ReplacedBy, &c.Replaces, Time(&c.IssuedAt),
		Time(&c.UpdatedAt))
	return c, err
}

func scanHold(sc scanner) (store.Hold, error) {
	var h store.Hold
	err := sc.Scan(&h.ID, &h.Card, &h.Merchant, &h.Amount, &h.Currency, &h.Captured, &h.Status,
		Time(&h.ExpiresAt), Time(&h.UpdatedAt))
	return h, err
}

func scanIdem(sc scanner) (store.IdemRecord, error) {
	var r store.IdemRecord
	err := sc.Scan(&r.Operator, &r.Key, &r.RequestHash, &r.Status, &r.Response, Time(&r.At))
	return r, err
}

func scanTransfer(sc scanner) (store.Transfer, error) {
	var t store.Transfer
	err := sc.Scan(&t.ID, &t.Batch, &t.Kind, &t.Currency, &t.Card, &t.Pending, &t.Ref, &t.Amount, &t.Channel,
		&t.Merchant, &t.Terminal, &t.Operator, &t.Memo, Time(&t.At))
	return t, err
}

// LoadAccounts returns the accounts with the given codes.
func (r *Reader) LoadAccounts(ctx context.Context, codes []string) ([]store.Account, error) {
	out, err := load(ctx, r, stringKeys("code", codes), scanAccount, `SELECT `+AccountCols+` FROM accounts WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load accounts: %w", err)
	}
	return out, nil
}

// LoadCards returns the cards with the given numbers.
func (r *Reader) LoadCards(ctx context.Context, numbers []string) ([]store.Card, error) {
	out, err := load(ctx, r, stringKeys("number", numbers), scanCard, `SELECT `+CardCols+` FROM cards WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load cards: %w", err)
	}
	return out, nil
}

// LoadHolds returns the holds with the given ids.
func (r *Reader) LoadHolds(ctx context.Context, ids []int64) ([]store.Hold, error) {
	out, err := load(ctx, r, int64Keys("id", ids), scanHold, `SELECT `+HoldCols+` FROM holds WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load holds: %w", err)
	}
	return out, nil
}

// LoadIdempotency returns the records with the given keys.
func (r *Reader) LoadIdempotency(ctx context.Context, keys []store.IdemKey) ([]store.IdemRecord, error) {
	ops, ks := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ops[i], ks[i] = k.Operator, k.Key
	}
	set := pairKeys("operator", "text", ops, "key", "text", ks)
	out, err := load(ctx, r, set, scanIdem, `SELECT `+IdemCols+` FROM idempotency WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load idempotency: %w", err)
	}
	return out, nil
}

// pairKeys is a set of two-part keys.
func pairKeys(col1, type1 string, vals1 any, col2, type2 string, vals2 any) keys {
	n := 0
	switch v := vals1.(type) {
	case []string:
		n = len(v)
	case []int64:
		n = len(v)
	}
	return keys{cols: []string{col1, col2}, types: []string{type1, type2}, vals: []any{vals1, vals2}, n: n}
}

// ExpiredHolds lists up to limit pending holds that expired before t, the
// oldest first. A limit of zero or less means no limit.
func (r *Reader) ExpiredHolds(ctx context.Context, t time.Time, n int) ([]store.Hold, error) {
	out, err := collect(ctx, r, scanHold, `SELECT `+HoldCols+` FROM holds
		WHERE status = ? AND expires_at < ? ORDER BY expires_at, id LIMIT ?`, store.HoldPending, r.d.Time(t), limit(n))
	if err != nil {
		return nil, r.errorf("expired holds: %w", err)
	}
	return out, nil
}

// PendingHolds lists every pending hold by id.
func (r *Reader) PendingHolds(ctx context.Context) ([]store.Hold, error) {
	out, err := collect(ctx, r, scanHold, `SELECT `+HoldCols+` FROM holds WHERE status = ? ORDER BY id`,
		store.HoldPending)
	if err != nil {
		return nil, r.errorf("pending holds: %w", err)
	}
	return out, nil
}

// GetCard returns one card or an error wrapping store.ErrNotFound.
func (r *Reader) GetCard(ctx context.Context, number string) (store.Card, error) {
	c, err := get(ctx, r, scanCard, `SELECT `+CardCols+` FROM cards WHERE number = ?`, number)
	if err != nil {
		return store.Card{}, r.errorf("card %q: %w", number, err)
	}
	return c, nil
}

// CardAccounts lists the accounts of a card by id.
func (r *Reader) CardAccounts(ctx context.Context, number string) ([]store.Account, error) {
	if number == "" {
		return nil, nil // accounts of no card are not a card's accounts
	}
	out, err := collect(ctx, r, scanAccount, `SELECT `+AccountCols+` FROM accounts WHERE card = ? ORDER BY id`, number)
	if err != nil {
		return nil, r.errorf("card accounts %q: %w", number, err)
	}
	return out, nil
}

// GetTransfer returns one transfer with its entries in insert order, or an
// error wrapping store.ErrNotFound.
func (r *Reader) GetTransfer(ctx context.Context, id int64) (store.Transfer, error) {
	t, err := get(ctx, r, scanTransfer, `SELECT `+TransferCols+` FROM transfers WHERE id = ?`, id)
	if err != nil {
		return store.Transfer{}, r.errorf("transfer %d: %w", id, err)
	}
	err = r.query(ctx, func(rows *sql.Rows) error {
		var e store.Entry
		if err := rows.Scan(&e.Account, &e.Amount); err != nil {
			return err
		}
		t.Entries = append(t.Entries, e)
		return nil
	}, `SELECT account_id, amount FROM entries WHERE transfer_id = ? ORDER BY n`, id)
	if err != nil {
		return store.Transfer{}, r.errorf("transfer %d entries: %w", id, err)
	}
	return t, nil
}

// ReversalOf returns the id of the first reversal of transfer id, or 0.
func (r *Reader) ReversalOf(ctx context.Context, id int64) (int64, error) {
	rev, err := get(ctx, r, func(sc scanner) (int64, error) {
		var v int64
		return v, sc.Scan(&v)
	}, `SELECT id FROM transfers WHERE ref = ? AND ref <> 0 AND kind = ? ORDER BY id LIMIT 1`, id, store.TransferReversal)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, r.errorf("reversal of %d: %w", id, err)
	}
	return rev, nil
}

// TrialBalance returns every account's posted totals ordered by code.
func (r *Reader) TrialBalance(ctx context.Context) ([]store.TrialLine, error) {
	out, err := collect(ctx, r, func(sc scanner) (store.TrialLine, error) {
		var l store.TrialLine
		err := sc.Scan(&l.Code, &l.Kind, &l.Debits, &l.Credits)
		return l, err
	}, `SELECT code, kind, debits_posted, credits_posted FROM accounts ORDER BY code`)
	if err != nil {
		return nil, r.errorf("trial balance: %w", err)
	}
	return out, nil
}

// AllAccounts streams every account by id from one statement's snapshot.
func (r *Reader) AllAccounts(ctx context.Context, fn func(store.Account) error) error {
	err := r.query(ctx, func(rows *sql.Rows) error {
		a, err := scanAccount(rows)
		if err != nil {
			return err
		}
		return fn(a)
	}, `SELECT `+AccountCols+` FROM accounts ORDER BY id`)
	if err != nil {
		return r.errorf("all accounts: %w", err)
	}
	return nil
}

// batchPage is how many batch records Batches reads per query; the transfers
// are then loaded one batch at a time, so memory stays bounded by a batch.
const batchPage = 64

// Batches streams every committed batch in seq order with its transfers in
// id order and their entries in insert order.
func (r *Reader) Batches(ctx context.Context, fn func(store.BatchRecord, []store.Transfer) error) error {
	after := int64(-1 << 63)
	for {
		page, err := collect(ctx, r, func(sc scanner) (store.BatchRecord, error) {
			var b store.BatchRecord
			err := sc.Scan(&b.Seq, &b.PrevHash, &b.Hash, &b.Transfers, Time(&b.At))
			return b, err
		}, `SELECT seq, prev_hash, hash, transfers, at FROM batches WHERE seq > ? ORDER BY seq LIMIT ?`,
			after, batchPage)
		if err != nil {
			return r.errorf("batches: %w", err)
		}
		for _, rec := range page {
			ts, err := r.batchTransfers(ctx, rec.Seq)
			if err != nil {
				return r.errorf("batch %d: %w", rec.Seq, err)
			}
			if err := fn(rec, ts); err != nil {
				return err
			}
			after = rec.Seq
		}
		if len(page) < batchPage {
			return nil
		}
	}
}

// batchTransfers loads one batch's transfers and their entries.
func (r *Reader) batchTransfers(ctx context.Context, seq int64) ([]store.Transfer, error) {
	ts, err := collect(ctx, r, scanTransfer, `SELECT `+TransferCols+` FROM transfers WHERE batch = ? ORDER BY id`, seq)
	if err != nil || len(ts) == 0 {
		return ts, err
	}
	// The engine numbers transfers in commit order, so a batch's transfers
	// form an id range: one ordered primary-key range scan reads their
	// entries. Entries of other transfers inside the range, if ever there
	// are any, are skipped.
	byID := make(map[int64]int, len(ts))
	for i, t := range ts {
		byID[t.ID] = i
	}
	err = r.query(ctx, func(rows *sql.Rows) error {
		var (
			id int64
			e  store.Entry
		)
		if err := rows.Scan(&id, &e.Account, &e.Amount); err != nil {
			return err
		}
		if i, ok := byID[id]; ok {
			ts[i].Entries = append(ts[i].Entries, e)
		}
		return nil
	}, `SELECT transfer_id, account_id, amount FROM entries WHERE transfer_id BETWEEN ? AND ?
		ORDER BY transfer_id, n`, ts[0].ID, ts[len(ts)-1].ID)
	return ts, err
}

// countedTables are the tables CountRows reports.
var countedTables = []string{"accounts", "transfers", "entries", "cards", "holds", "batches", "idempotency", "audit_log"}

// CountRows returns the row count of each ledger table.
func (r *Reader) CountRows(ctx context.Context) (map[string]int64, error) {
	q := "SELECT "
	for i, t := range countedTables {
		if i > 0 {
			q += ", "
		}
		q += "(SELECT count(*) FROM " + t + ")"
	}
	counts := make([]int64, len(countedTables))
	dest := make([]any, len(counts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := r.db.QueryRowContext(ctx, q).Scan(dest...); err != nil {
		return nil, r.errorf("count rows: %w", err)
	}
	out := make(map[string]int64, len(counts))
	for i, t := range countedTables {
		out[t] = counts[i]
	}
	return out, nil
}

// MetaCardSerial is the meta key holding Head.CardSerial.
const MetaCardSerial = "card_serial"

// Head reads where the ledger stands, in one statement so that every field
// comes from the same snapshot.
func (r *Reader) Head(ctx context.Context) (store.Head, error) {
	var (
		h      store.Head
		serial sql.NullString
	)
	err := r.db.QueryRowContext(ctx, r.sql(`SELECT
		(SELECT coalesce(max(seq), 0) FROM batches),
		(SELECT hash FROM batches ORDER BY seq DESC LIMIT 1),
		(SELECT coalesce(max(id), 0) FROM transfers),
		(SELECT coalesce(max(id), 0) FROM accounts),
		(SELECT value FROM meta WHERE key = ?),
		(SELECT last_id FROM audit_head),
		(SELECT hash FROM audit_head),
		(SELECT coalesce(max(version), 0) FROM deny_changes)`), MetaCardSerial).
		Scan(&h.LastBatch, &h.LastHash, &h.LastTransfer, &h.LastAccount, &serial, &h.LastAudit, &h.AuditHash,
			&h.DenyVersion)
	if err != nil {
		return store.Head{}, r.errorf("head: %w", err)
	}
	if serial.Valid {
		if h.CardSerial, err = strconv.ParseInt(serial.String, 10, 64); err != nil {
			return store.Head{}, r.errorf("head: card serial %q: %w", serial.String, err)
		}
	}
	return h, nil
}
