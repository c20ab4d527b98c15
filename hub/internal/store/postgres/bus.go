package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

// PutDeadLetter stores l and returns its ID, or the ID of the letter of the
// same handler and message stored before.
func (s *Store) PutDeadLetter(ctx context.Context, l store.DeadLetter) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("postgres: put dead letter of handler %q, message %q: %w", l.Handler, l.MessageUUID, err)
	}
	if err := l.Check(); err != nil {
		return fail(err)
	}
	md, err := store.EncodeMetadata(l.Metadata)
	if err != nil {
		return fail(err)
	}
	var id int64
	// A racing insert of the same letter makes this one wait for it, then
	// do nothing; the SELECT, a new snapshot, then sees the winner's row.
	err = s.pool.QueryRow(ctx, `INSERT INTO dead_letters
		(handler, topic, message_uuid, payload, metadata, reason, code, attempts, failed_at)
		VALUES ($1, $2, $3, $4, $5::text::json, $6, $7, $8, $9)
		ON CONFLICT (handler, message_uuid) DO NOTHING RETURNING id`,
		l.Handler, l.Topic, l.MessageUUID, nullBytes(l.Payload), md, l.Reason, l.Code, l.Attempts,
		l.FailedAt).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.pool.QueryRow(ctx, `SELECT id FROM dead_letters WHERE handler = $1 AND message_uuid = $2`,
			l.Handler, l.MessageUUID).Scan(&id)
	}
	if err != nil {
		return fail(err)
	}
	return id, nil
}

// MarkDeadLetterReplayed records a replay of letter id at at.
func (s *Store) MarkDeadLetterReplayed(ctx context.Context, id int64, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE dead_letters SET replayed_at = $1, replays = replays + 1 WHERE id = $2`,
		at, id)
	if err != nil {
		return fmt.Errorf("postgres: mark dead letter %d replayed: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: mark dead letter %d replayed: %w", id, store.ErrNotFound)
	}
	return nil
}

// ClaimDedupKey claims c.Key unless it is claimed or completed and not
// lapsed by c.At. Of racing claimers, the first to insert or lock the row
// wins; the others then see its new expiry, fail the WHERE and get no row.
func (s *Store) ClaimDedupKey(ctx context.Context, c store.DedupClaim) (bool, error) {
	if err := store.CheckDedup(c.Key, c.At, c.Until); err != nil {
		return false, fmt.Errorf("postgres: claim dedup key: %w", err)
	}
	var key string
	err := s.pool.QueryRow(ctx, `INSERT INTO bus_dedup AS d (key, state, holder, claimed_at, expires_at)
		VALUES ($1, 'claimed', $2, $3, $4)
		ON CONFLICT (key) DO UPDATE SET state = 'claimed', holder = excluded.holder,
			claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
		WHERE d.expires_at <= excluded.claimed_at
		RETURNING key`, c.Key, c.Holder, c.At, c.Until).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres: claim dedup key %q: %w", c.Key, err)
	}
	return true, nil
}

// CompleteDedupKey marks key handled until until.
func (s *Store) CompleteDedupKey(ctx context.Context, key string, at, until time.Time) error {
	if err := store.CheckDedup(key, at, until); err != nil {
		return fmt.Errorf("postgres: complete dedup key: %w", err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO bus_dedup (key, state, holder, claimed_at, expires_at)
		VALUES ($1, 'completed', '', $2, $3)
		ON CONFLICT (key) DO UPDATE SET state = 'completed', expires_at = excluded.expires_at`,
		key, at, until)
	if err != nil {
		return fmt.Errorf("postgres: complete dedup key %q: %w", key, err)
	}
	return nil
}

// ReleaseDedupKey frees key if holder claimed it and did not complete it.
func (s *Store) ReleaseDedupKey(ctx context.Context, key, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM bus_dedup WHERE key = $1 AND holder = $2 AND state = 'claimed'`,
		key, holder)
	if err != nil {
		return fmt.Errorf("postgres: release dedup key %q: %w", key, err)
	}
	return nil
}

// PurgeDedupKeys deletes the keys lapsed by before.
func (s *Store) PurgeDedupKeys(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM bus_dedup WHERE expires_at <= $1`, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: purge dedup keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
