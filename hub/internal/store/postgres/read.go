package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

type scanner interface{ Scan(dest ...any) error }

const accountCols = `id, code, kind, currency, card, purse, constrained, negative_limit,
	debits_posted, credits_posted, debits_pending, credits_pending, created_at`

func scanAccount(sc scanner) (store.Account, error) {
	var a store.Account
	err := sc.Scan(&a.ID, &a.Code, &a.Kind, &a.Currency, &a.Card, &a.Purse, &a.Constrained, &a.NegativeLimit,
		&a.DebitsPosted, &a.CreditsPosted, &a.DebitsPending, &a.CreditsPending, &a.CreatedAt)
	a.CreatedAt = a.CreatedAt.UTC()
	return a, err
}

const cardCols = `number, product, status, holder_name, id_type, id_number, phone, pin_hash, pin_tries,
	deposit, currency, replaced_by, replaces, issued_at, updated_at`

func scanCard(sc scanner) (store.Card, error) {
	var (
		c     store.Card
		tries int32
	)
	err := sc.Scan(&c.Number, &c.Product, &c.Status, &c.HolderName, &c.IDType, &c.IDNumber, &c.Phone,
		&c.PinHash, &tries, &c.Deposit, &c.Currency, &c.ReplacedBy, &c.Replaces, &c.IssuedAt, &c.UpdatedAt)
	c.PinTries, c.IssuedAt, c.UpdatedAt = int(tries), c.IssuedAt.UTC(), c.UpdatedAt.UTC()
	return c, err
}

const holdCols = `id, card, merchant, amount, currency, captured, status, expires_at, updated_at`

func scanHold(sc scanner) (store.Hold, error) {
	var h store.Hold
	err := sc.Scan(&h.ID, &h.Card, &h.Merchant, &h.Amount, &h.Currency, &h.Captured, &h.Status, &h.ExpiresAt, &h.UpdatedAt)
	h.ExpiresAt, h.UpdatedAt = h.ExpiresAt.UTC(), h.UpdatedAt.UTC()
	return h, err
}

const idemCols = `operator, key, request_hash, status, response, at`

func scanIdem(sc scanner) (store.IdemRecord, error) {
	var (
		r      store.IdemRecord
		status int32
	)
	err := sc.Scan(&r.Operator, &r.Key, &r.RequestHash, &status, &r.Response, &r.At)
	r.Status, r.At = int(status), r.At.UTC()
	return r, err
}

const transferCols = `id, batch, kind, currency, card, pending, ref, amount, channel, merchant, terminal,
	operator, memo, at`

func scanTransfer(sc scanner) (store.Transfer, error) {
	var t store.Transfer
	err := sc.Scan(&t.ID, &t.Batch, &t.Kind, &t.Currency, &t.Card, &t.Pending, &t.Ref, &t.Amount, &t.Channel,
		&t.Merchant, &t.Terminal, &t.Operator, &t.Memo, &t.At)
	t.At = t.At.UTC()
	return t, err
}

// query runs a read and calls fn for every row, streaming: rows are not
// collected first.
func (s *Store) query(ctx context.Context, fn func(pgx.Rows) error, query string, args ...any) error {
	rows, err := s.pool.Query(ctx, query, args...)
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
	err := s.query(ctx, func(rows pgx.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, query, args...)
	return out, err
}

// pgLimit turns a limit of zero or less into NULL, which is LIMIT ALL.
func pgLimit(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	l := int64(limit)
	return &l
}

// LoadAccounts returns the accounts with the given codes.
func (s *Store) LoadAccounts(ctx context.Context, codes []string) ([]store.Account, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	out, err := collect(ctx, s, scanAccount, `SELECT `+accountCols+` FROM accounts WHERE code = ANY($1)`, codes)
	if err != nil {
		return nil, fmt.Errorf("postgres: load accounts: %w", err)
	}
	return out, nil
}

// LoadCards returns the cards with the given numbers.
func (s *Store) LoadCards(ctx context.Context, numbers []string) ([]store.Card, error) {
	if len(numbers) == 0 {
		return nil, nil
	}
	out, err := collect(ctx, s, scanCard, `SELECT `+cardCols+` FROM cards WHERE number = ANY($1)`, numbers)
	if err != nil {
		return nil, fmt.Errorf("postgres: load cards: %w", err)
	}
	return out, nil
}

// LoadHolds returns the holds with the given ids.
func (s *Store) LoadHolds(ctx context.Context, ids []int64) ([]store.Hold, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := collect(ctx, s, scanHold, `SELECT `+holdCols+` FROM holds WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: load holds: %w", err)
	}
	return out, nil
}

// LoadIdempotency returns the records with the given keys.
func (s *Store) LoadIdempotency(ctx context.Context, keys []store.IdemKey) ([]store.IdemRecord, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ops, ks := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ops[i], ks[i] = k.Operator, k.Key
	}
	// A semi-join, so a key asked for twice still yields one record.
	out, err := collect(ctx, s, scanIdem, `SELECT `+idemCols+` FROM idempotency
		WHERE (operator, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, ops, ks)
	if err != nil {
		return nil, fmt.Errorf("postgres: load idempotency: %w", err)
	}
	return out, nil
}

// ExpiredHolds lists up to limit pending holds that expired before t, the
// oldest first. A limit of zero or less means no limit.
func (s *Store) ExpiredHolds(ctx context.Context, t time.Time, limit int) ([]store.Hold, error) {
	out, err := collect(ctx, s, scanHold, `SELECT `+holdCols+` FROM holds
		WHERE status = $1 AND expires_at < $2 ORDER BY expires_at, id LIMIT $3`, store.HoldPending, t, pgLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: expired holds: %w", err)
	}
	return out, nil
}

// PendingHolds lists every pending hold by id.
func (s *Store) PendingHolds(ctx context.Context) ([]store.Hold, error) {
	out, err := collect(ctx, s, scanHold, `SELECT `+holdCols+` FROM holds WHERE status = $1 ORDER BY id`,
		store.HoldPending)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending holds: %w", err)
	}
	return out, nil
}

// GetCard returns one card or an error wrapping store.ErrNotFound.
func (s *Store) GetCard(ctx context.Context, number string) (store.Card, error) {
	c, err := scanCard(s.pool.QueryRow(ctx, `SELECT `+cardCols+` FROM cards WHERE number = $1`, number))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Card{}, fmt.Errorf("postgres: card %q: %w", number, store.ErrNotFound)
	}
	if err != nil {
		return store.Card{}, fmt.Errorf("postgres: card %q: %w", number, err)
	}
	return c, nil
}

// CardAccounts lists the accounts of a card by id.
func (s *Store) CardAccounts(ctx context.Context, number string) ([]store.Account, error) {
	if number == "" {
		return nil, nil // accounts of no card are not a card's accounts
	}
	out, err := collect(ctx, s, scanAccount, `SELECT `+accountCols+` FROM accounts WHERE card = $1 ORDER BY id`, number)
	if err != nil {
		return nil, fmt.Errorf("postgres: card accounts %q: %w", number, err)
	}
	return out, nil
}

// GetTransfer returns one transfer with its entries in insert order, or an
// error wrapping store.ErrNotFound.
func (s *Store) GetTransfer(ctx context.Context, id int64) (store.Transfer, error) {
	t, err := scanTransfer(s.pool.QueryRow(ctx, `SELECT `+transferCols+` FROM transfers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Transfer{}, fmt.Errorf("postgres: transfer %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Transfer{}, fmt.Errorf("postgres: transfer %d: %w", id, err)
	}
	err = s.query(ctx, func(rows pgx.Rows) error {
		var e store.Entry
		if err := rows.Scan(&e.Account, &e.Amount); err != nil {
			return err
		}
		t.Entries = append(t.Entries, e)
		return nil
	}, `SELECT account_id, amount FROM entries WHERE transfer_id = $1 ORDER BY n`, id)
	if err != nil {
		return store.Transfer{}, fmt.Errorf("postgres: transfer %d entries: %w", id, err)
	}
	return t, nil
}

// ReversalOf returns the id of the first reversal of transfer id, or 0.
func (s *Store) ReversalOf(ctx context.Context, id int64) (int64, error) {
	var rev int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM transfers WHERE ref = $1 AND ref <> 0 AND kind = $2 ORDER BY id LIMIT 1`,
		id, store.TransferReversal).Scan(&rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: reversal of %d: %w", id, err)
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
		return nil, fmt.Errorf("postgres: trial balance: %w", err)
	}
	return out, nil
}

// AllAccounts streams every account by id from one statement's snapshot.
func (s *Store) AllAccounts(ctx context.Context, fn func(store.Account) error) error {
	err := s.query(ctx, func(rows pgx.Rows) error {
		a, err := scanAccount(rows)
		if err != nil {
			return err
		}
		return fn(a)
	}, `SELECT `+accountCols+` FROM accounts ORDER BY id`)
	if err != nil {
		return fmt.Errorf("postgres: all accounts: %w", err)
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
				r store.BatchRecord
				n int32
			)
			err := sc.Scan(&r.Seq, &r.PrevHash, &r.Hash, &n, &r.At)
			r.Transfers, r.At = int(n), r.At.UTC()
			return r, err
		}, `SELECT seq, prev_hash, hash, transfers, at FROM batches WHERE seq > $1 ORDER BY seq LIMIT $2`,
			after, batchPage)
		if err != nil {
			return fmt.Errorf("postgres: batches: %w", err)
		}
		for _, rec := range page {
			ts, err := s.batchTransfers(ctx, rec.Seq)
			if err != nil {
				return fmt.Errorf("postgres: batch %d: %w", rec.Seq, err)
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
	ts, err := collect(ctx, s, scanTransfer, `SELECT `+transferCols+` FROM transfers WHERE batch = $1 ORDER BY id`, seq)
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
	err = s.query(ctx, func(rows pgx.Rows) error {
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
	}, `SELECT transfer_id, account_id, amount FROM entries WHERE transfer_id BETWEEN $1 AND $2
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
	if err := s.pool.QueryRow(ctx, q).Scan(dest...); err != nil {
		return nil, fmt.Errorf("postgres: count rows: %w", err)
	}
	out := make(map[string]int64, len(counts))
	for i, t := range countedTables {
		out[t] = counts[i]
	}
	return out, nil
}
