package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

// TamperAuditDelete deletes audit row id as the database's owner can: with
// session_replication_role = replica no ordinary trigger fires, the
// append-only one included. It exists for tests proving that verify finds
// such a rewrite; the application never calls it.
func (s *Store) TamperAuditDelete(ctx context.Context, id int64) error {
	return s.tamper(ctx, `DELETE FROM audit_log WHERE id = $1`, id)
}

// TamperAuditOutcome rewrites audit row id's outcome past the trigger, like
// TamperAuditDelete; for tests only.
func (s *Store) TamperAuditOutcome(ctx context.Context, id int64, outcome string) error {
	return s.tamper(ctx, `UPDATE audit_log SET outcome = $1 WHERE id = $2`, outcome, id)
}

func (s *Store) tamper(ctx context.Context, change string, args ...any) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// SET LOCAL, so the pooled connection goes back with its triggers on.
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return fmt.Errorf("postgres: tamper: %w", err)
		}
		tag, err := tx.Exec(ctx, change, args...)
		if err != nil {
			return fmt.Errorf("postgres: tamper: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: tamper: %d rows changed, want 1", tag.RowsAffected())
		}
		return nil
	})
}

// InsertUnchainedAudit appends e without a hash, as rows written before the
// chain began (migration 00005) look; for tests only.
func (s *Store) InsertUnchainedAudit(ctx context.Context, e store.AuditEntry) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_log (id, at, operator, role, action, target, remote, outcome, detail)
			SELECT last_id + 1, $1, $2, $3, $4, $5, $6, $7, $8 FROM audit_head FOR UPDATE`,
			e.At, e.Operator, e.Role, e.Action, e.Target, e.Remote, e.Outcome, e.Detail)
		if err == nil {
			_, err = tx.Exec(ctx, `UPDATE audit_head SET last_id = last_id + 1`)
		}
		if err != nil {
			return fmt.Errorf("postgres: insert unchained audit: %w", err)
		}
		return nil
	})
}
