package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

var (
	tapsTable = &table{
		head: `INSERT OR ROLLBACK INTO taps (device, seq, card, at, kind, route, stop, offline, status, reason,
			fare, balance, transfer_id, batch) VALUES `,
		cols: 14, max: 256,
	}
	denyTable = &table{
		head: `INSERT OR ROLLBACK INTO deny_changes (version, card, added, reason, at) VALUES `,
		cols: 5, max: 256,
	}
	riderTable = &table{
		head: `INSERT OR ROLLBACK INTO rider_states (card, state, updated_at) VALUES `,
		tail: ` ON CONFLICT (card) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		cols: 3, max: 256,
	}
	// max() of two arguments is SQLite's scalar max: last_seq never goes
	// back.
	deviceSeqTable = &table{
		head: `UPDATE OR ROLLBACK devices SET last_seq = max(devices.last_seq, v.column2) FROM (VALUES `,
		tail: `) AS v WHERE devices.id = v.column1`,
		cols: 2, max: 256,
	}
)

// writeTransit writes b's taps, deny changes, rider states and device
// sequence numbers inside tx.
func (s *Store) writeTransit(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
	if n := len(b.Taps); n > 0 {
		w := s.rows(ctx, tx, tapsTable, n)
		for i := range b.Taps {
			t := &b.Taps[i]
			if err := w.add(t.Device, t.Seq, t.Card, toDB(t.At), t.Kind, t.Route, t.Stop, boolInt(t.Offline),
				t.Status, t.Reason, t.Fare, t.Balance, t.Transfer, t.Batch); err != nil {
				return fmt.Errorf("taps: %w", err)
			}
		}
	}

	if n := len(b.DenyChanges); n > 0 {
		st, err := s.cached(reads.LastDenyVersion)
		if err != nil {
			return fmt.Errorf("deny_changes: %w", err)
		}
		var last int64
		if err := tx.StmtContext(ctx, st).QueryRowContext(ctx).Scan(&last); err != nil {
			return fmt.Errorf("deny_changes: %w", err)
		}
		if first := b.DenyChanges[0].Version; first != last+1 {
			return fmt.Errorf("deny_changes: version %d does not follow the stored version %d: %w",
				first, last, store.ErrConflict)
		}
		w := s.rows(ctx, tx, denyTable, n)
		for _, d := range b.DenyChanges {
			if err := w.add(d.Version, d.Card, boolInt(d.Add), d.Reason, toDB(d.At)); err != nil {
				return fmt.Errorf("deny_changes: %w", err)
			}
		}
	}

	if n := len(b.RiderStates); n > 0 {
		w := s.rows(ctx, tx, riderTable, n)
		for _, r := range b.RiderStates {
			if err := w.add(r.Card, nullBytes(r.State), toDB(r.UpdatedAt)); err != nil {
				return fmt.Errorf("rider_states: %w", err)
			}
		}
	}

	if seqs := store.MergeDeviceSeqs(b.DeviceSeqs); len(seqs) > 0 {
		w := s.rows(ctx, tx, deviceSeqTable, len(seqs))
		for _, d := range seqs {
			if err := w.add(d.Device, d.LastSeq); err != nil {
				return fmt.Errorf("devices last_seq: %w", err)
			}
		}
		// A device the engine advanced but the database does not know means
		// the two disagree: the batch must not commit.
		if w.affected != int64(len(seqs)) {
			return fmt.Errorf("devices last_seq: updated %d of %d: %w", w.affected, len(seqs), store.ErrNotFound)
		}
	}
	return nil
}

// AddDevice inserts a device; a taken id is store.ErrConflict. An empty
// status is store.DeviceActive.
func (s *Store) AddDevice(ctx context.Context, d store.Device) error {
	if err := store.CheckDevice(&d); err != nil {
		return fmt.Errorf("sqlite: add device %q: %w", d.ID, err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO devices (id, operator, mode, route, key, status, last_seq, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.Operator, d.Mode, d.Route, d.Key, d.Status, d.LastSeq, toDB(d.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: add device %q: %w", d.ID, constraint(err))
	}
	return nil
}

// SetDeviceStatus sets a device's status.
func (s *Store) SetDeviceStatus(ctx context.Context, id, status string) error {
	if err := store.CheckDeviceStatus(status); err != nil {
		return fmt.Errorf("sqlite: set status of device %q: %w", id, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE devices SET status = ? WHERE id = ?`, status, id)
	if err != nil {
		return fmt.Errorf("sqlite: set status of device %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: set status of device %q: %w", id, store.ErrNotFound)
	}
	return nil
}
