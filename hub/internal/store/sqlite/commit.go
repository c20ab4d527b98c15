package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// table is the shape of a multi-row statement. Rows go in statements of a
// power-of-two number of rows, at most max, so every table needs only a
// handful of distinct prepared statements whatever the batch size. Measured
// on the commit benchmark, statements of many rows commit about half again
// as many transfers per second as one prepared statement per row.
//
// The statements say OR ROLLBACK: a failing row fails the whole batch
// anyway, and it spares SQLite keeping a statement journal to undo just the
// failed statement.
type table struct {
	head string // "INSERT INTO t (a, b) VALUES "
	tail string // e.g. an ON CONFLICT clause
	cols int
	max  int // rows per statement; max*cols stays far below SQLite's 32766 variables
}

// sql returns the statement text for rows rows.
func (t *table) sql(rows int) string {
	return t.head + placeholders(rows, t.cols) + t.tail
}

// chunk returns the largest power of two no greater than n or t.max.
func (t *table) chunk(n int) int {
	k := t.max
	for k > n {
		k >>= 1
	}
	return k
}

var (
	accountsTable = &table{
		head: `INSERT OR ROLLBACK INTO accounts (id, code, kind, currency, card, purse, constrained, negative_limit,
			debits_posted, credits_posted, debits_pending, credits_pending, created_at) VALUES `,
		cols: 13, max: 256,
	}
	// An UPDATE … FROM (VALUES …) walks the values and finds each account
	// by its primary key.
	accountTotalsTable = &table{
		head: `UPDATE OR ROLLBACK accounts SET debits_posted = v.column2, credits_posted = v.column3,
			debits_pending = v.column4, credits_pending = v.column5 FROM (VALUES `,
		tail: `) AS v WHERE accounts.id = v.column1`,
		cols: 5, max: 256,
	}
	transfersTable = &table{
		head: `INSERT OR ROLLBACK INTO transfers (id, batch, kind, currency, card, pending, ref, amount,
			channel, merchant, terminal, operator, memo, at) VALUES `,
		cols: 14, max: 256,
	}
	entriesTable = &table{
		head: `INSERT OR ROLLBACK INTO entries (transfer_id, n, account_id, amount) VALUES `,
		cols: 4, max: 512,
	}
	cardsTable = &table{
		head: `INSERT OR ROLLBACK INTO cards (number, product, status, holder_name, id_type, id_number, phone,
			pin_hash, pin_tries, deposit, currency, replaced_by, replaces, issued_at, updated_at) VALUES `,
		cols: 15, max: 128,
	}
	holdsTable = &table{
		head: `INSERT OR ROLLBACK INTO holds (id, card, merchant, amount, currency, captured, status,
			expires_at, updated_at) VALUES `,
		tail: ` ON CONFLICT (id) DO UPDATE SET card = excluded.card, merchant = excluded.merchant,
			amount = excluded.amount, currency = excluded.currency, captured = excluded.captured,
			status = excluded.status, expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
		cols: 9, max: 256,
	}
	idemTable = &table{
		head: `INSERT OR ROLLBACK INTO idempotency (operator, key, request_hash, status, response, at) VALUES `,
		cols: 6, max: 256,
	}
	auditTable = &table{
		head: `INSERT OR ROLLBACK INTO audit_log (id, at, operator, role, action, target, remote, outcome, detail,
			prev_hash, hash) VALUES `,
		cols: 11, max: 256,
	}
)

// rows feeds one table's rows into multi-row INSERTs inside a transaction.
type rows struct {
	s    *Store
	ctx  context.Context
	tx   *sql.Tx
	t    *table
	left int   // rows not yet executed
	k    int   // rows in the statement being filled
	buf  []any // its arguments

	affected int64 // rows changed by the statements executed so far
}

func (s *Store) rows(ctx context.Context, tx *sql.Tx, t *table, n int) *rows {
	k := t.chunk(n)
	return &rows{s: s, ctx: ctx, tx: tx, t: t, left: n, k: k, buf: make([]any, 0, k*t.cols)}
}

// add appends one row and executes the statement once it is full.
func (r *rows) add(vals ...any) error {
	r.buf = append(r.buf, vals...)
	if len(r.buf) < r.k*r.t.cols {
		return nil
	}
	st, err := r.s.cached(r.t.sql(r.k))
	if err != nil {
		return err
	}
	res, err := r.tx.StmtContext(r.ctx, st).ExecContext(r.ctx, r.buf...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	r.affected += n
	r.left -= r.k
	r.k = r.t.chunk(r.left)
	r.buf = r.buf[:0]
	return nil
}

// The single-row statements CommitBatch uses.
const (
	insertBatch = `INSERT INTO batches (seq, prev_hash, hash, transfers, at) VALUES (?, ?, ?, ?, ?)`
	upsertMeta  = `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	updateCard  = `UPDATE cards SET product = ?, status = ?, holder_name = ?, id_type = ?, id_number = ?, phone = ?,
		pin_hash = ?, pin_tries = ?, deposit = ?, currency = ?, replaced_by = ?, replaces = ?, updated_at = ?
		WHERE number = ?`
)

// prepareBatch prepares every statement b needs before the transaction
// starts: the write pool has one connection, which the transaction holds,
// so nothing can be prepared on the pool once it has begun.
func (s *Store) prepareBatch(ctx context.Context, b *store.Batch) error {
	queries := []string{insertBatch, upsertMeta, updateCard}
	entries := 0
	for i := range b.Transfers {
		entries += len(b.Transfers[i].Entries)
	}
	for _, x := range []struct {
		t *table
		n int
	}{
		{accountsTable, len(b.NewAccounts)}, {accountTotalsTable, len(b.Accounts)}, {transfersTable, len(b.Transfers)}, {entriesTable, entries},
		{cardsTable, len(b.NewCards)}, {holdsTable, len(b.Holds)}, {idemTable, len(b.Idempotency)},
		{auditTable, len(b.Audit)},
		{tapsTable, len(b.Taps)}, {denyTable, len(b.DenyChanges)}, {riderTable, len(b.RiderStates)},
		{deviceSeqTable, len(store.MergeDeviceSeqs(b.DeviceSeqs))},
	} {
		for n := x.n; n > 0; n -= x.t.chunk(n) {
			queries = append(queries, x.t.sql(x.t.chunk(n)))
		}
	}
	if len(b.DenyChanges) > 0 {
		queries = append(queries, reads.LastDenyVersion)
	}
	for _, q := range queries {
		if _, err := s.stmt(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// CommitBatch writes b in one IMMEDIATE transaction; on any error it rolls
// back and nothing of b is written.
func (s *Store) CommitBatch(ctx context.Context, b *store.Batch) error {
	if err := b.Check(); err != nil {
		return fmt.Errorf("sqlite: commit batch %d: %w", b.Record.Seq, err)
	}
	if err := s.prepareBatch(ctx, b); err != nil {
		return fmt.Errorf("sqlite: commit batch %d: %w", b.Record.Seq, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: commit batch %d: %w", b.Record.Seq, err)
	}
	if err := s.writeBatch(ctx, tx, b); err != nil {
		// After an OR ROLLBACK conflict SQLite has already rolled back and
		// this reports that no transaction is active; either way nothing of
		// b remains.
		tx.Rollback()
		return fmt.Errorf("sqlite: commit batch %d: %w", b.Record.Seq, constraint(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit batch %d: %w", b.Record.Seq, err)
	}
	return nil
}

func (s *Store) writeBatch(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
	rec := b.Record
	if _, err := s.exec(ctx, tx, insertBatch, rec.Seq, nullBytes(rec.PrevHash), rec.Hash, rec.Transfers, toDB(rec.At)); err != nil {
		return fmt.Errorf("batch record: %w", err)
	}

	if n := len(b.NewAccounts); n > 0 {
		w := s.rows(ctx, tx, accountsTable, n)
		for _, a := range b.NewAccounts {
			if err := w.add(a.ID, a.Code, a.Kind, a.Currency, a.Card, a.Purse, boolInt(a.Constrained),
				a.NegativeLimit, a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending,
				toDB(a.CreatedAt)); err != nil {
				return fmt.Errorf("new accounts: %w", err)
			}
		}
	}

	if err := s.updateAccounts(ctx, tx, b.Accounts); err != nil {
		return err
	}

	if n := len(b.Transfers); n > 0 {
		w := s.rows(ctx, tx, transfersTable, n)
		entries := 0
		for i := range b.Transfers {
			t := &b.Transfers[i]
			entries += len(t.Entries)
			if err := w.add(t.ID, t.Batch, t.Kind, t.Currency, t.Card, boolInt(t.Pending), t.Ref, t.Amount,
				t.Channel, t.Merchant, t.Terminal, t.Operator, t.Memo, toDB(t.At)); err != nil {
				return fmt.Errorf("transfers: %w", err)
			}
		}
		if entries > 0 {
			w := s.rows(ctx, tx, entriesTable, entries)
			for i := range b.Transfers {
				t := &b.Transfers[i]
				for n, e := range t.Entries {
					if err := w.add(t.ID, int64(n), e.Account, e.Amount); err != nil {
						return fmt.Errorf("entries: %w", err)
					}
				}
			}
		}
	}

	if n := len(b.NewCards); n > 0 {
		w := s.rows(ctx, tx, cardsTable, n)
		for _, c := range b.NewCards {
			if err := w.add(c.Number, c.Product, c.Status, c.HolderName, c.IDType, c.IDNumber, c.Phone,
				c.PinHash, int64(c.PinTries), c.Deposit, c.Currency, c.ReplacedBy, c.Replaces,
				toDB(c.IssuedAt), toDB(c.UpdatedAt)); err != nil {
				return fmt.Errorf("new cards: %w", err)
			}
		}
	}

	if err := s.updateCards(ctx, tx, b.Cards); err != nil {
		return err
	}

	if n := len(b.Holds); n > 0 {
		w := s.rows(ctx, tx, holdsTable, n)
		for _, h := range b.Holds {
			if err := w.add(h.ID, h.Card, h.Merchant, h.Amount, h.Currency, h.Captured, h.Status,
				toDB(h.ExpiresAt), toDB(h.UpdatedAt)); err != nil {
				return fmt.Errorf("holds: %w", err)
			}
		}
	}

	if n := len(b.Idempotency); n > 0 {
		w := s.rows(ctx, tx, idemTable, n)
		for _, r := range b.Idempotency {
			if err := w.add(r.Operator, r.Key, r.RequestHash, int64(r.Status), nullBytes(r.Response),
				toDB(r.At)); err != nil {
				return fmt.Errorf("idempotency: %w", err)
			}
		}
	}

	if err := s.appendAudit(ctx, tx, b.Audit, true); err != nil {
		return err
	}

	if b.CardSerial != 0 {
		if _, err := s.exec(ctx, tx, upsertMeta, reads.MetaCardSerial, strconv.FormatInt(b.CardSerial, 10)); err != nil {
			return fmt.Errorf("card serial: %w", err)
		}
	}
	for _, g := range b.SagaStates {
		var err error
		if g.Create {
			_, err = tx.ExecContext(ctx, `INSERT INTO sagas (`+sagaCols+`) VALUES (?, ?, ?, ?, ?, 1, ?, ?)
				ON CONFLICT (operator, key) DO NOTHING`, g.Operator, g.Key, g.Kind, g.State, string(g.Data), toDB(g.At), toDB(g.At))
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE sagas SET state = ?, data = ?, version = version + 1, updated_at = ?
				WHERE operator = ? AND key = ?`, g.State, string(g.Data), toDB(g.At), g.Operator, g.Key)
		}
		if err != nil {
			return fmt.Errorf("sagas: %w", err)
		}
	}
	return s.writeTransit(ctx, tx, b)
}

// exec runs a prepared statement inside tx.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := s.cached(query)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// updateAccounts sets the absolute totals of accounts, many rows per
// statement. Every account must exist: a missing one means the engine and
// the database disagree, and the batch must not commit.
func (s *Store) updateAccounts(ctx context.Context, tx *sql.Tx, accounts []store.Account) error {
	if len(accounts) == 0 {
		return nil
	}
	w := s.rows(ctx, tx, accountTotalsTable, len(accounts))
	for _, a := range accounts {
		if err := w.add(a.ID, a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending); err != nil {
			return fmt.Errorf("accounts: %w", err)
		}
	}
	if w.affected != int64(len(accounts)) {
		return fmt.Errorf("accounts: updated %d of %d: %w", w.affected, len(accounts), store.ErrNotFound)
	}
	return nil
}

// updateCards writes every mutable column of cards; each card must exist.
func (s *Store) updateCards(ctx context.Context, tx *sql.Tx, cards []store.Card) error {
	if len(cards) == 0 {
		return nil
	}
	st, err := s.cached(updateCard)
	if err != nil {
		return fmt.Errorf("cards: %w", err)
	}
	ts := tx.StmtContext(ctx, st)
	for _, c := range cards {
		res, err := ts.ExecContext(ctx, c.Product, c.Status, c.HolderName, c.IDType, c.IDNumber, c.Phone,
			c.PinHash, int64(c.PinTries), c.Deposit, c.Currency, c.ReplacedBy, c.Replaces,
			toDB(c.UpdatedAt), c.Number)
		if err != nil {
			return fmt.Errorf("card %s: %w", c.Number, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("card %s: %w", c.Number, store.ErrNotFound)
		}
	}
	return nil
}

// inList returns "?,?,…" with n markers.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// appendAudit chains es onto the audit log inside tx. The write connection
// is the only writer, so reading the head and moving it in one transaction
// keeps the chain linear. prepared says prepareBatch made the statements;
// AppendAudit must not prepare any (it would wait for the connection while
// holding the statement cache that a running batch needs), so its one row
// goes in unprepared.
func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, es []store.AuditEntry, prepared bool) error {
	if len(es) == 0 {
		return nil
	}
	var (
		lastID   int64
		lastHash []byte
	)
	if err := tx.QueryRowContext(ctx, `SELECT last_id, hash FROM audit_head`).Scan(&lastID, &lastHash); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	es = store.ChainAudit(lastID, lastHash, es)
	w := s.rows(ctx, tx, auditTable, len(es))
	for _, e := range es {
		args := []any{e.ID, toDB(e.At), e.Operator, e.Role, e.Action, e.Target, e.Remote, e.Outcome,
			e.Detail, e.PrevHash, e.Hash}
		var err error
		if prepared {
			err = w.add(args...)
		} else {
			_, err = tx.ExecContext(ctx, auditTable.sql(1), args...)
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	last := es[len(es)-1]
	if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET last_id = ?, hash = ?`, last.ID, last.Hash); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}
