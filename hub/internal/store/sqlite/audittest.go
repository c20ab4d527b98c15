package sqlite

import (
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

// The append-only triggers of the audit log, as 00001_init.sql creates
// them; the tamper helpers put them back after going around them.
const (
	auditNoUpdate = `CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END`
	auditNoDelete = `CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END`
)

// TamperAuditDelete deletes audit row id as the database's owner can: drop
// the trigger, delete, put the trigger back. It exists for tests proving
// that verify finds such a rewrite; the application never calls it.
func (s *Store) TamperAuditDelete(ctx context.Context, id int64) error {
	return s.tamper(ctx, `DROP TRIGGER audit_log_no_delete`, `DELETE FROM audit_log WHERE id = ?`, auditNoDelete, id)
}

// TamperAuditOutcome rewrites audit row id's outcome past the trigger, like
// TamperAuditDelete; for tests only.
func (s *Store) TamperAuditOutcome(ctx context.Context, id int64, outcome string) error {
	return s.tamper(ctx, `DROP TRIGGER audit_log_no_update`, `UPDATE audit_log SET outcome = ? WHERE id = ?`,
		auditNoUpdate, outcome, id)
}

func (s *Store) tamper(ctx context.Context, drop, change, restore string, args ...any) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, drop); err != nil {
		return fmt.Errorf("sqlite: tamper: %w", err)
	}
	res, err := tx.ExecContext(ctx, change, args...)
	if err != nil {
		return fmt.Errorf("sqlite: tamper: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("sqlite: tamper: %d rows changed (%v), want 1", n, err)
	}
	if _, err := tx.ExecContext(ctx, restore); err != nil {
		return fmt.Errorf("sqlite: tamper: %w", err)
	}
	return tx.Commit()
}

// InsertUnchainedAudit appends e without a hash, as rows written before the
// chain began (migration 00005) look; for tests only.
func (s *Store) InsertUnchainedAudit(ctx context.Context, e store.AuditEntry) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (id, at, operator, role, action, target, remote, outcome, detail)
		SELECT last_id + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM audit_head`,
		toDB(e.At), e.Operator, e.Role, e.Action, e.Target, e.Remote, e.Outcome, e.Detail); err != nil {
		return fmt.Errorf("sqlite: insert unchained audit: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET last_id = last_id + 1`); err != nil {
		return fmt.Errorf("sqlite: insert unchained audit: %w", err)
	}
	return tx.Commit()
}
