package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Statement is one SQL statement with its arguments, written by a library
// the hub uses (the message router's table layout) and run by the store.
type Statement struct {
	Query string
	Args  []any
}

// EnsureTable runs the statements create returns in tx when table does not
// exist yet, so the first publisher to a topic of the outbox makes its
// table in the ledger's own transaction. The check first keeps the common
// case to one cheap query; create is called only when the table is missing.
// table is a name as to_regclass reads it (quoted where it must be).
func EnsureTable(ctx context.Context, tx pgx.Tx, table string, create func() ([]Statement, error)) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return err
	}
	if exists {
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
