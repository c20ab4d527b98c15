package postgres

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

var (
	tapCopyCols = []string{"device", "seq", "card", "at", "kind", "route", "stop", "offline", "status", "reason",
		"fare", "balance", "transfer_id", "batch"}
	denyCopyCols = []string{"version", "card", "added", "reason", "at"}
)

// tapRows encodes taps in COPY text format: offline batches bring them a
// thousand at a time.
func tapRows(taps []store.TapRecord) *bytes.Buffer {
	w := &textWriter{first: true}
	w.buf.Grow(len(taps) * 128)
	for i := range taps {
		t := &taps[i]
		w.text(t.Device)
		w.int(t.Seq)
		w.text(t.Card)
		w.time(t.At)
		w.text(t.Kind)
		w.text(t.Route)
		w.text(t.Stop)
		w.bool(t.Offline)
		w.text(t.Status)
		w.text(t.Reason)
		w.int(t.Fare)
		w.int(t.Balance)
		w.int(t.Transfer)
		w.int(t.Batch)
		w.end()
	}
	return &w.buf
}

func denyRows(changes []store.DenyChange) *bytes.Buffer {
	w := &textWriter{first: true}
	for _, d := range changes {
		w.int(d.Version)
		w.text(d.Card)
		w.bool(d.Add)
		w.text(d.Reason)
		w.time(d.At)
		w.end()
	}
	return &w.buf
}

// writeTransit writes b's taps, deny changes, rider states and device
// sequence numbers inside tx.
func writeTransit(ctx context.Context, tx pgx.Tx, b *store.Batch) error {
	if err := copyText(ctx, tx, "taps", tapCopyCols, len(b.Taps), tapRows(b.Taps)); err != nil {
		return err
	}

	if len(b.DenyChanges) > 0 {
		// Versions must continue the stored ones with no gap; the primary
		// key alone would let a gap through.
		var last int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM deny_changes`).Scan(&last); err != nil {
			return fmt.Errorf("deny_changes: %w", err)
		}
		if first := b.DenyChanges[0].Version; first != last+1 {
			return fmt.Errorf("deny_changes: version %d does not follow the stored version %d: %w",
				first, last, store.ErrConflict)
		}
		if err := copyText(ctx, tx, "deny_changes", denyCopyCols, len(b.DenyChanges), denyRows(b.DenyChanges)); err != nil {
			return err
		}
	}

	if n := len(b.RiderStates); n > 0 {
		cards, states, updated := make([]string, n), make([][]byte, n), make([]time.Time, n)
		for i, r := range b.RiderStates {
			cards[i], states[i], updated[i] = r.Card, nullBytes(r.State), r.UpdatedAt
		}
		_, err := tx.Exec(ctx, `INSERT INTO rider_states (card, state, updated_at)
			SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[])
			ON CONFLICT (card) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
			cards, states, updated)
		if err != nil {
			return fmt.Errorf("rider_states: %w", err)
		}
	}

	if seqs := store.MergeDeviceSeqs(b.DeviceSeqs); len(seqs) > 0 {
		ids, last := make([]string, len(seqs)), make([]int64, len(seqs))
		for i, d := range seqs {
			ids[i], last[i] = d.Device, d.LastSeq
		}
		tag, err := tx.Exec(ctx, `UPDATE devices AS d SET last_seq = greatest(d.last_seq, v.seq)
			FROM unnest($1::text[], $2::bigint[]) AS v (id, seq)
			WHERE d.id = v.id`, ids, last)
		if err != nil {
			return fmt.Errorf("devices last_seq: %w", err)
		}
		// A device the engine advanced but the database does not know means
		// the two disagree: the batch must not commit.
		if tag.RowsAffected() != int64(len(ids)) {
			return fmt.Errorf("devices last_seq: updated %d of %d: %w", tag.RowsAffected(), len(ids), store.ErrNotFound)
		}
	}
	return nil
}

// AddDevice inserts a device; a taken id is store.ErrConflict. An empty
// status is store.DeviceActive.
func (s *Store) AddDevice(ctx context.Context, d store.Device) error {
	if err := store.CheckDevice(&d); err != nil {
		return fmt.Errorf("postgres: add device %q: %w", d.ID, err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO devices (id, operator, mode, route, key, status, last_seq, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		d.ID, d.Operator, d.Mode, d.Route, d.Key, d.Status, d.LastSeq, d.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: add device %q: %w", d.ID, constraint(err))
	}
	return nil
}

// SetDeviceStatus sets a device's status.
func (s *Store) SetDeviceStatus(ctx context.Context, id, status string) error {
	if err := store.CheckDeviceStatus(status); err != nil {
		return fmt.Errorf("postgres: set status of device %q: %w", id, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET status = $1 WHERE id = $2`, status, id)
	if err != nil {
		return fmt.Errorf("postgres: set status of device %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set status of device %q: %w", id, store.ErrNotFound)
	}
	return nil
}
