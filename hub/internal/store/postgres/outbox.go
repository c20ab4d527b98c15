package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

var _ store.SharedDatabase = (*Store)(nil)

// outboxWriter writes a batch's outbox messages in tx, the batch's own
// transaction.
type outboxWriter func(ctx context.Context, tx pgx.Tx, msgs []store.OutboxMessage) error

// SetOutbox implements store.SharedDatabase: CommitBatch runs the
// statements enc returns for a batch's outbox in the batch's transaction.
func (s *Store) SetOutbox(enc store.OutboxEncoder) {
	if enc == nil {
		s.outbox = nil
		return
	}
	s.outbox = func(ctx context.Context, tx pgx.Tx, msgs []store.OutboxMessage) error {
		return writeOutbox(ctx, tx, enc, msgs)
	}
}

// writeOutbox runs, in tx, what enc makes of msgs: each topic's table is
// made first when missing, then its messages inserted.
func writeOutbox(ctx context.Context, tx pgx.Tx, enc store.OutboxEncoder, msgs []store.OutboxMessage) error {
	topics, err := enc(ctx, msgs)
	if err != nil {
		return err
	}
	for _, t := range topics {
		if err := ensureTable(ctx, tx, t.Table, t.Create); err != nil {
			return fmt.Errorf("table %s: %w", t.Table, err)
		}
		for _, st := range t.Insert {
			if _, err := tx.Exec(ctx, st.Query, st.Args...); err != nil {
				return fmt.Errorf("insert into %s: %w", t.Table, err)
			}
		}
	}
	return nil
}

// ensureTable runs the statements create returns in tx when table does not
// exist yet, so the first publisher to a topic of the outbox makes its
// table in the ledger's own transaction. The check first keeps the common
// case to one cheap query; create is called only when the table is missing.
// table is a name as to_regclass reads it (quoted where it must be).
func ensureTable(ctx context.Context, tx pgx.Tx, table string, create func() ([]store.Statement, error)) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return err
	}
	if exists || create == nil {
		return nil
	}
	stmts, err := create()
	if err != nil {
		return err
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st.Query, st.Args...); err != nil {
			return err
		}
	}
	return nil
}
