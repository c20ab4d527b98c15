package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// inChunk bounds the keys in one IN list, far below SQLite's variable limit
// and small enough to keep statement preparation cheap.
const inChunk = 500

type scanner interface{ Scan(dest ...any) error }

const accountCols = `id, code, kind, currency, card, purse, constrained, negative_limit,
	debits_posted, credits_posted, debits_pending, credits_pending, created_at`

func scanAccount(sc scanner) (store.Account, error) {
	var (
		a  store.Account
		at int64
	)
	err := sc.Scan(&a.ID, &a.Code, &a.Kind, &a.Currency, &a.Card, &a.Purse, &a.Constrained, &a.NegativeLimit,
		&a.DebitsPosted, &a.CreditsPosted, &a.DebitsPending, &a.CreditsPending, &at)
	a.CreatedAt = fromDB(at)
	return a, err
}

const cardCols = `number, product, status, holder_name, id_type, id_number, phone, pin_hash, pin_tries,
	deposit, currency, replaced_by, replaces, issued_at, updated_at`

func scanCard(sc scanner) (store.Card, error) {
	var (
		c               store.Card
		issued, updated int64
	)
	err := sc.Scan(&c.Number, &c.Product, &c.Status, &c.HolderName, &c.IDType, &c.IDNumber, &c.Phone,
		&c.PinHash, &c.PinTries, &c.Deposit, &c.Currency, &c.ReplacedBy, &c.Replaces, &issued, &updated)
	c.IssuedAt, c.UpdatedAt = fromDB(issued), fromDB(updated)
	return c, err
}

const holdCols = `id, card, merchant, amount, currency, captured, status, expires_at, updated_at`

func scanHold(sc scanner) (store.Hold, error) {
	var (
		h                store.Hold
		expires, updated int64
	)
	err := sc.Scan(&h.ID, &h.Card, &h.Merchant, &h.Amount, &h.Currency, &h.Captured, &h.Status, &expires, &updated)
	h.ExpiresAt, h.UpdatedAt = fromDB(expires), fromDB(updated)
	return h, err
}

const idemCols = `operator, key, request_hash, status, response, at`

func scanIdem(sc scanner) (store.IdemRecord, error) {
	var (
		r  store.IdemRecord
		at int64
	)
	err := sc.Scan(&r.Operator, &r.Key, &r.RequestHash, &r.Status, &r.Response, &at)
	r.At = fromDB(at)
	return r, err
}

const transferCols = `id, batch, kind, currency, card, pending, ref, amount, channel, merchant, terminal,
	operator, memo, at`

func scanTransfer(sc scanner) (store.Transfer, error) {
	var (
		t  store.Transfer
		at int64
	)
	err := sc.Scan(&t.ID, &t.Batch, &t.Kind, &t.Currency, &t.Card, &t.Pending, &t.Ref, &t.Amount, &t.Channel,
		&t.Merchant, &t.Terminal, &t.Operator, &t.Memo, &at)
	t.At = fromDB(at)
	return t, err
}

// query runs a read and calls fn for every row.
func (s *Store) query(ctx context.Context, fn func(*sql.Rows) error, query string, args ...any) error {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// collect runs a read and scans every row with scan.
func collect[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	err := s.query(ctx, func(rows *sql.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, query, args...)
	return out, err
}

// sqlLimit turns a limit of zero or less into -1, which SQLite reads as no
// limit.
func sqlLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

// loadIn runs query once per chunk of keys; query has one %s where the
// chunk's "?,?,…" list goes and per is the number of arguments per key.
func loadIn[K, T any](ctx context.Context, s *Store, keys []K, per int, args func(K) []any,
	scan func(scanner) (T, error), query string) ([]T, error) {
	var out []T
	step := inChunk / per
	for lo := 0; lo < len(keys); lo += step {
		chunk := keys[lo:min(lo+step, len(keys))]
		vals := make([]any, 0, len(chunk)*per)
		for _, k := range chunk {
			vals = append(vals, args(k)...)
		}
		list := inList(len(chunk))
		if per > 1 {
			list = "VALUES " + placeholders(len(chunk), per)
		}
		got, err := collect(ctx, s, scan, fmt.Sprintf(query, list), vals...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func one[K any](k K) []any { return []any{k} }

// LoadAccounts returns the accounts with the given codes.
func (s *Store) LoadAccounts(ctx context.Context, codes []string) ([]store.Account, error) {
	out, err := loadIn(ctx, s, codes, 1, one, scanAccount,
		`SELECT `+accountCols+` FROM accounts WHERE code IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load accounts: %w", err)
	}
	return out, nil
}

// LoadCards returns the cards with the given numbers.
func (s *Store) LoadCards(ctx context.Context, numbers []string) ([]store.Card, error) {
	out, err := loadIn(ctx, s, numbers, 1, one, scanCard,
		`SELECT `+cardCols+` FROM cards WHERE number IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load cards: %w", err)
	}
	return out, nil
}

// LoadHolds returns the holds with the given ids.
func (s *Store) LoadHolds(ctx context.Context, ids []int64) ([]store.Hold, error) {
	out, err := loadIn(ctx, s, ids, 1, one, scanHold,
		`SELECT `+holdCols+` FROM holds WHERE id IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load holds: %w", err)
	}
	return out, nil
}

// LoadIdempotency returns the records with the given keys.
func (s *Store) LoadIdempotency(ctx context.Context, keys []store.IdemKey) ([]store.IdemRecord, error) {
	out, err := loadIn(ctx, s, keys, 2, func(k store.IdemKey) []any { return []any{k.Operator, k.Key} }, scanIdem,
		`SELECT `+idemCols+` FROM idempotency WHERE (operator, key) IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load idempotency: %w", err)
	}
	return out, nil
}

// ExpiredHolds lists up to limit pending holds that expired before t, the
// oldest first. A limit of zero or less means no limit.
func (s *Store) ExpiredHolds(ctx context.Context, t time.Time, limit int) ([]store.Hold, error) {
	out, err := collect(ctx, s, scanHold, `SELECT `+holdCols+` FROM holds
		WHERE status = ? AND expires_at < ? ORDER BY expires_at, id LIMIT ?`,
		store.HoldPending, toDB(t), sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: expired holds: %w", err)
	}
	return out, nil
}

// PendingHolds lists every pending hold by id.
func (s *Store) PendingHolds(ctx context.Context) ([]store.Hold, error) {
	out, err := collect(ctx, s, scanHold, `SELECT `+holdCols+` FROM holds WHERE status = ? ORDER BY id`,
		store.HoldPending)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending holds: %w", err)
	}
	return out, nil
}

// GetCard returns one card or an error wrapping store.ErrNotFound.
func (s *Store) GetCard(ctx context.Context, number string) (store.Card, error) {
	c, err := scanCard(s.r.QueryRowContext(ctx, `SELECT `+cardCols+` FROM cards WHERE number = ?`, number))
	if err == sql.ErrNoRows {
		return store.Card{}, fmt.Errorf("sqlite: card %q: %w", number, store.ErrNotFound)
	}
	if err != nil {
		return store.Card{}, fmt.Errorf("sqlite: card %q: %w", number, err)
	}
	return c, nil
}

// CardAccounts lists the accounts of a card by id.
func (s *Store) CardAccounts(ctx context.Context, number string) ([]store.Account, error) {
	if number == "" {
		return nil, nil // accounts of no card are not a card's accounts
	}
	out, err := collect(ctx, s, scanAccount, `SELECT `+accountCols+` FROM accounts WHERE card = ? ORDER BY id`, number)
	if err != nil {
		return nil, fmt.Errorf("sqlite: card accounts %q: %w", number, err)
	}
	return out, nil
}

// GetTransfer returns one transfer with its entries in insert order, or an
// error wrapping store.ErrNotFound.
func (s *Store) GetTransfer(ctx context.Context, id int64) (store.Transfer, error) {
	t, err := scanTransfer(s.r.QueryRowContext(ctx, `SELECT `+transferCols+` FROM transfers WHERE id = ?`, id))
	if err == sql.ErrNoRows {
		return store.Transfer{}, fmt.Errorf("sqlite: transfer %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Transfer{}, fmt.Errorf("sqlite: transfer %d: %w", id, err)
	}
	err = s.query(ctx, func(rows *sql.Rows) error {
		var e store.Entry
		if err := rows.Scan(&e.Account, &e.Amount); err != nil {
			return err
		}
		t.Entries = append(t.Entries, e)
		return nil
	}, `SELECT account_id, amount FROM entries WHERE transfer_id = ? ORDER BY n`, id)
	if err != nil {
		return store.Transfer{}, fmt.Errorf("sqlite: transfer %d entries: %w", id, err)
	}
	return t, nil
}

// ReversalOf returns the id of the first reversal of transfer id, or 0.
func (s *Store) ReversalOf(ctx context.Context, id int64) (int64, error) {
	var rev int64
	err := s.r.QueryRowContext(ctx, `SELECT id FROM transfers WHERE ref = ? AND ref <> 0 AND kind = ? ORDER BY id LIMIT 1`,
		id, store.TransferReversal).Scan(&rev)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: reversal of %d: %w", id, err)
	}
	return rev, nil
}

// TrialBalance returns every account's posted totals ordered by code.
func (s *Store) TrialBalance(ctx context.Context) ([]store.TrialLine, error) {
	out, err := collect(ctx, s, func(sc scanner) (store.TrialLine, error) {
		var l store.TrialLine
		err := sc.Scan(&l.Code, &l.Kind, &l.Debits, &l.Credits)
		return l, err
	}, `SELECT code, kind, debits_posted, credits_posted FROM accounts ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: trial balance: %w", err)
	}
	return out, nil
}

// AllAccounts streams every account by id from one read snapshot.
func (s *Store) AllAccounts(ctx context.Context, fn func(store.Account) error) error {
	err := s.query(ctx, func(rows *sql.Rows) error {
		a, err := scanAccount(rows)
		if err != nil {
			return err
		}
		return fn(a)
	}, `SELECT `+accountCols+` FROM accounts ORDER BY id`)
	if err != nil {
		return fmt.Errorf("sqlite: all accounts: %w", err)
	}
	return nil
}

// batchPage is how many batch records Batches reads per query; the transfers
// are then loaded one batch at a time, so memory stays bounded by a batch.
const batchPage = 64

// Batches streams every committed batch in seq order with its transfers in
// id order and their entries in insert order.
func (s *Store) Batches(ctx context.Context, fn func(store.BatchRecord, []store.Transfer) error) error {
	after := int64(-1 << 63)
	for {
		page, err := collect(ctx, s, func(sc scanner) (store.BatchRecord, error) {
			var (
				r  store.BatchRecord
				at int64
			)
			err := sc.Scan(&r.Seq, &r.PrevHash, &r.Hash, &r.Transfers, &at)
			r.At = fromDB(at)
			return r, err
		}, `SELECT seq, prev_hash, hash, transfers, at FROM batches WHERE seq > ? ORDER BY seq LIMIT ?`,
			after, batchPage)
		if err != nil {
			return fmt.Errorf("sqlite: batches: %w", err)
		}
		for _, rec := range page {
			ts, err := s.batchTransfers(ctx, rec.Seq)
			if err != nil {
				return fmt.Errorf("sqlite: batch %d: %w", rec.Seq, err)
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
func (s *Store) batchTransfers(ctx context.Context, seq int64) ([]store.Transfer, error) {
	ts, err := collect(ctx, s, scanTransfer, `SELECT `+transferCols+` FROM transfers WHERE batch = ? ORDER BY id`, seq)
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
	err = s.query(ctx, func(rows *sql.Rows) error {
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
func (s *Store) CountRows(ctx context.Context) (map[string]int64, error) {
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
	if err := s.r.QueryRowContext(ctx, q).Scan(dest...); err != nil {
		return nil, fmt.Errorf("sqlite: count rows: %w", err)
	}
	out := make(map[string]int64, len(counts))
	for i, t := range countedTables {
		out[t] = counts[i]
	}
	return out, nil
}
