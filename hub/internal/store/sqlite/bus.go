package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// PutDeadLetter stores l and returns its ID, or the ID of the letter of the
// same handler and message stored before.
func (s *Store) PutDeadLetter(ctx context.Context, l store.DeadLetter) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("sqlite: put dead letter of handler %q, message %q: %w", l.Handler, l.MessageUUID, err)
	}
	if err := l.Check(); err != nil {
		return fail(err)
	}
	md, err := store.EncodeMetadata(l.Metadata)
	if err != nil {
		return fail(err)
	}
	var id int64
	err = s.w.QueryRowContext(ctx, `INSERT INTO dead_letters
		(handler, topic, message_uuid, payload, metadata, reason, code, attempts, failed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (handler, message_uuid) DO NOTHING RETURNING id`,
		l.Handler, l.Topic, l.MessageUUID, nullBytes(l.Payload), md, l.Reason, l.Code, l.Attempts,
		toDB(l.FailedAt)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		// Stored before; rows are never deleted by the hub, so it is there.
		err = s.w.QueryRowContext(ctx, `SELECT id FROM dead_letters WHERE handler = ? AND message_uuid = ?`,
			l.Handler, l.MessageUUID).Scan(&id)
	}
	if err != nil {
		return fail(err)
	}
	return id, nil
}

// MarkDeadLetterReplayed records a replay of letter id at at.
func (s *Store) MarkDeadLetterReplayed(ctx context.Context, id int64, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE dead_letters SET replayed_at = ?, replays = replays + 1 WHERE id = ?`,
		toDB(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: mark dead letter %d replayed: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: mark dead letter %d replayed: %w", id, store.ErrNotFound)
	}
	return nil
}

// ClaimDedupKey claims c.Key unless it is claimed or completed and not
// lapsed by c.At. The upsert takes the key over only when its row lapsed,
// in one statement, so two claimers never both win.
func (s *Store) ClaimDedupKey(ctx context.Context, c store.DedupClaim) (bool, error) {
	if err := store.CheckDedup(c.Key, c.At, c.Until); err != nil {
		return false, fmt.Errorf("sqlite: claim dedup key: %w", err)
	}
	var key string
	err := s.w.QueryRowContext(ctx, `INSERT INTO bus_dedup (key, state, holder, claimed_at, expires_at)
		VALUES (?, 'claimed', ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET state = 'claimed', holder = excluded.holder,
			claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
		WHERE bus_dedup.expires_at <= excluded.claimed_at
		RETURNING key`, c.Key, c.Holder, toDB(c.At), toDB(c.Until)).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: claim dedup key %q: %w", c.Key, err)
	}
	return true, nil
}

// CompleteDedupKey marks key handled until until.
func (s *Store) CompleteDedupKey(ctx context.Context, key string, at, until time.Time) error {
	if err := store.CheckDedup(key, at, until); err != nil {
		return fmt.Errorf("sqlite: complete dedup key: %w", err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO bus_dedup (key, state, holder, claimed_at, expires_at)
		VALUES (?, 'completed', '', ?, ?)
		ON CONFLICT (key) DO UPDATE SET state = 'completed', expires_at = excluded.expires_at`,
		key, toDB(at), toDB(until))
	if err != nil {
		return fmt.Errorf("sqlite: complete dedup key %q: %w", key, err)
	}
	return nil
}

// ReleaseDedupKey frees key if holder claimed it and did not complete it.
func (s *Store) ReleaseDedupKey(ctx context.Context, key, holder string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM bus_dedup WHERE key = ? AND holder = ? AND state = 'claimed'`,
		key, holder)
	if err != nil {
		return fmt.Errorf("sqlite: release dedup key %q: %w", key, err)
	}
	return nil
}

// PurgeDedupKeys deletes the keys lapsed by before.
func (s *Store) PurgeDedupKeys(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM bus_dedup WHERE expires_at <= ?`, toDB(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge dedup keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge dedup keys: %w", err)
	}
	return n, nil
}
