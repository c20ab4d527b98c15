package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// CommitBatch writes b in one transaction; on any error it rolls back and
// nothing of b is written. Bulk rows go in with COPY and bulk updates as one
// statement over unnest()ed arrays, so a batch costs a handful of round
// trips whatever its size.
func (s *Store) CommitBatch(ctx context.Context, b *store.Batch) error {
	if err := b.Check(); err != nil {
		return fmt.Errorf("postgres: commit batch %d: %w", b.Record.Seq, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: commit batch %d: %w", b.Record.Seq, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op after Commit
	if err := s.writeBatch(ctx, tx, b); err != nil {
		return fmt.Errorf("postgres: commit batch %d: %w", b.Record.Seq, constraint(err))
	}
	if w := s.outbox; w != nil && len(b.Outbox) > 0 {
		if err := w(ctx, tx, b.Outbox); err != nil {
			return fmt.Errorf("postgres: commit batch %d: outbox: %w", b.Record.Seq, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit batch %d: %w", b.Record.Seq, constraint(err))
	}
	return nil
}

// copyRows COPYs n rows into table; row(i, buf) fills buf with row i. One
// buffer serves every row: pgx encodes a row before asking for the next.
func copyRows(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, row func(i int, buf []any)) error {
	if n == 0 {
		return nil
	}
	buf := make([]any, len(cols))
	i := -1
	src := pgx.CopyFromFunc(func() ([]any, error) {
		i++
		if i >= n {
			return nil, nil
		}
		row(i, buf)
		return buf, nil
	})
	got, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, src)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	if got != int64(n) {
		return fmt.Errorf("%s: copied %d rows of %d", table, got, n)
	}
	return nil
}

var (
	accountCopyCols = []string{"id", "code", "kind", "currency", "card", "purse", "constrained", "negative_limit",
		"debits_posted", "credits_posted", "debits_pending", "credits_pending", "created_at"}
	transferCopyCols = []string{"id", "batch", "kind", "currency", "card", "pending", "ref", "amount", "channel",
		"merchant", "terminal", "operator", "memo", "at"}
	entryCopyCols = []string{"transfer_id", "n", "account_id", "amount"}
	cardCopyCols  = []string{"number", "product", "status", "holder_name", "id_type", "id_number", "phone", "pin_hash",
		"pin_tries", "deposit", "currency", "replaced_by", "replaces", "issued_at", "updated_at"}
	idemCopyCols  = []string{"operator", "key", "request_hash", "status", "response", "at"}
	auditCopyCols = []string{"id", "at", "operator", "role", "action", "target", "remote", "outcome", "detail",
		"prev_hash", "hash"}
)

func (s *Store) writeBatch(ctx context.Context, tx pgx.Tx, b *store.Batch) error {
	rec := b.Record
	if _, err := tx.Exec(ctx, `INSERT INTO batches (seq, prev_hash, hash, transfers, at) VALUES ($1, $2, $3, $4, $5)`,
		rec.Seq, nullBytes(rec.PrevHash), rec.Hash, rec.Transfers, rec.At); err != nil {
		return fmt.Errorf("batch record: %w", err)
	}

	err := copyRows(ctx, tx, "accounts", accountCopyCols, len(b.NewAccounts), func(i int, r []any) {
		a := &b.NewAccounts[i]
		r[0], r[1], r[2], r[3], r[4], r[5], r[6] = a.ID, a.Code, a.Kind, a.Currency, a.Card, a.Purse, a.Constrained
		r[7], r[8], r[9], r[10], r[11], r[12] = a.NegativeLimit, a.DebitsPosted, a.CreditsPosted, a.DebitsPending,
			a.CreditsPending, a.CreatedAt
	})
	if err != nil {
		return err
	}

	if err := updateAccounts(ctx, tx, b.Accounts); err != nil {
		return err
	}

	if err := copyText(ctx, tx, "transfers", transferCopyCols, len(b.Transfers), transferRows(b.Transfers)); err != nil {
		return err
	}
	entries, n := entryRows(b.Transfers)
	if err := copyText(ctx, tx, "entries", entryCopyCols, n, entries); err != nil {
		return err
	}

	err = copyRows(ctx, tx, "cards", cardCopyCols, len(b.NewCards), func(i int, r []any) {
		c := &b.NewCards[i]
		r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7] = c.Number, c.Product, c.Status, c.HolderName, c.IDType,
			c.IDNumber, c.Phone, c.PinHash
		r[8], r[9], r[10], r[11], r[12], r[13], r[14] = int32(c.PinTries), c.Deposit, c.Currency, c.ReplacedBy,
			c.Replaces, c.IssuedAt, c.UpdatedAt
	})
	if err != nil {
		return err
	}
	if err := updateCards(ctx, tx, b.Cards); err != nil {
		return err
	}
	if err := upsertHolds(ctx, tx, b.Holds); err != nil {
		return err
	}

	err = copyRows(ctx, tx, "idempotency", idemCopyCols, len(b.Idempotency), func(i int, r []any) {
		x := &b.Idempotency[i]
		r[0], r[1], r[2], r[3], r[4], r[5] = x.Operator, x.Key, x.RequestHash, int32(x.Status), nullBytes(x.Response), x.At
	})
	if err != nil {
		return err
	}

	if b.CardSerial != 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			reads.MetaCardSerial, strconv.FormatInt(b.CardSerial, 10)); err != nil {
			return fmt.Errorf("card serial: %w", err)
		}
	}

	if err := writeTransit(ctx, tx, b); err != nil {
		return err
	}

	for _, g := range b.SagaStates {
		var err error
		if g.Create {
			_, err = tx.Exec(ctx, `INSERT INTO sagas (operator, key, kind, state, data, version, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5::text::json, 1, $6, $6) ON CONFLICT (operator, key) DO NOTHING`,
				g.Operator, g.Key, g.Kind, g.State, string(g.Data), g.At)
		} else {
			_, err = tx.Exec(ctx, `UPDATE sagas SET state = $1, data = $2::text::json, version = version + 1, updated_at = $3
				WHERE operator = $4 AND key = $5`, g.State, string(g.Data), g.At, g.Operator, g.Key)
		}
		if err != nil {
			return fmt.Errorf("sagas: %w", err)
		}
	}

	// Audit rows go last: they lock the audit head, held until commit.
	return appendAudit(ctx, tx, b.Audit)
}

// appendAudit chains es onto the audit log inside tx. It locks the audit
// head's row until tx ends, so appends are serialised and the chain is
// linear; ids come from the head, so a rolled-back append leaves no gap and
// a reader paging with ListAudit(afterID) never sees id 11 commit before 10.
func appendAudit(ctx context.Context, tx pgx.Tx, es []store.AuditEntry) error {
	if len(es) == 0 {
		return nil
	}
	var (
		lastID   int64
		lastHash []byte
	)
	if err := tx.QueryRow(ctx, `SELECT last_id, hash FROM audit_head FOR UPDATE`).Scan(&lastID, &lastHash); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	es = store.ChainAudit(lastID, lastHash, es)
	err := copyRows(ctx, tx, "audit_log", auditCopyCols, len(es), func(i int, r []any) {
		e := &es[i]
		r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] = e.ID, e.At, e.Operator, e.Role, e.Action, e.Target,
			e.Remote, e.Outcome, e.Detail
		r[9], r[10] = nullBytes(e.PrevHash), e.Hash
	})
	if err != nil {
		return err
	}
	last := &es[len(es)-1]
	if _, err := tx.Exec(ctx, `UPDATE audit_head SET last_id = $1, hash = $2`, last.ID, last.Hash); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}

// updateAccounts sets the absolute totals of accounts in one statement.
// Every account must exist: a missing one means the engine and the database
// disagree, and the batch must not commit.
func updateAccounts(ctx context.Context, tx pgx.Tx, accounts []store.Account) error {
	if len(accounts) == 0 {
		return nil
	}
	n := len(accounts)
	ids, dp, cp, dpe, cpe := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, a := range accounts {
		ids[i], dp[i], cp[i], dpe[i], cpe[i] = a.ID, a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending
	}
	tag, err := tx.Exec(ctx, `UPDATE accounts AS a
		SET debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dpe, credits_pending = v.cpe
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v (id, dp, cp, dpe, cpe)
		WHERE a.id = v.id`, ids, dp, cp, dpe, cpe)
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("accounts: updated %d of %d: %w", tag.RowsAffected(), n, store.ErrNotFound)
	}
	return nil
}

// updateCards writes every mutable column of cards; each card must exist.
func updateCards(ctx context.Context, tx pgx.Tx, cards []store.Card) error {
	if len(cards) == 0 {
		return nil
	}
	n := len(cards)
	var (
		number, product, status, holder, idType, idNumber, phone, pin = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
			make([]string, n)
		currency, replacedBy, replaces = make([]string, n), make([]string, n), make([]string, n)
		tries                          = make([]int32, n)
		deposit                        = make([]int64, n)
		updated                        = make([]time.Time, n)
	)
	for i, c := range cards {
		number[i], product[i], status[i], holder[i], idType[i], idNumber[i] = c.Number, c.Product, c.Status,
			c.HolderName, c.IDType, c.IDNumber
		phone[i], pin[i], tries[i], deposit[i], currency[i] = c.Phone, c.PinHash, int32(c.PinTries), c.Deposit, c.Currency
		replacedBy[i], replaces[i], updated[i] = c.ReplacedBy, c.Replaces, c.UpdatedAt
	}
	tag, err := tx.Exec(ctx, `UPDATE cards AS c
		SET product = v.product, status = v.status, holder_name = v.holder_name, id_type = v.id_type,
			id_number = v.id_number, phone = v.phone, pin_hash = v.pin_hash, pin_tries = v.pin_tries,
			deposit = v.deposit, currency = v.currency, replaced_by = v.replaced_by, replaces = v.replaces,
			updated_at = v.updated_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::integer[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::timestamptz[])
			AS v (number, product, status, holder_name, id_type, id_number, phone, pin_hash, pin_tries, deposit,
				currency, replaced_by, replaces, updated_at)
		WHERE c.number = v.number`,
		number, product, status, holder, idType, idNumber, phone, pin, tries, deposit, currency, replacedBy,
		replaces, updated)
	if err != nil {
		return fmt.Errorf("cards: %w", err)
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("cards: updated %d of %d: %w", tag.RowsAffected(), n, store.ErrNotFound)
	}
	return nil
}

// upsertHolds inserts or replaces holds. PostgreSQL refuses to upsert one
// row twice in a statement, so a hold listed twice keeps its last version,
// as applying the list in order would.
func upsertHolds(ctx context.Context, tx pgx.Tx, holds []store.Hold) error {
	if len(holds) == 0 {
		return nil
	}
	last := make(map[int64]int, len(holds))
	for i, h := range holds {
		last[h.ID] = i
	}
	n := len(last)
	var (
		ids, amount, captured            = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		card, merchant, currency, status = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
			make([]string, 0, n)
		expires, updated = make([]time.Time, 0, n), make([]time.Time, 0, n)
	)
	for i, h := range holds {
		if last[h.ID] != i {
			continue
		}
		ids, amount, captured = append(ids, h.ID), append(amount, h.Amount), append(captured, h.Captured)
		card, merchant = append(card, h.Card), append(merchant, h.Merchant)
		currency, status = append(currency, h.Currency), append(status, h.Status)
		expires, updated = append(expires, h.ExpiresAt), append(updated, h.UpdatedAt)
	}
	_, err := tx.Exec(ctx, `INSERT INTO holds (id, card, merchant, amount, currency, captured, status, expires_at, updated_at)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],
			$8::timestamptz[], $9::timestamptz[])
		ON CONFLICT (id) DO UPDATE SET card = excluded.card, merchant = excluded.merchant, amount = excluded.amount,
			currency = excluded.currency, captured = excluded.captured, status = excluded.status,
			expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
		ids, card, merchant, amount, currency, captured, status, expires, updated)
	if err != nil {
		return fmt.Errorf("holds: %w", err)
	}
	return nil
}
