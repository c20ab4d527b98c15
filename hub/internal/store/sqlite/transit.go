package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/citycard/citycard/hub/internal/store"
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

// lastDenyVersion is read inside the batch's transaction: a batch's deny
// changes must continue the stored versions with no gap.
const lastDenyVersion = `SELECT coalesce(max(version), 0) FROM deny_changes`

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
		st, err := s.cached(lastDenyVersion)
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

const deviceCols = `id, operator, mode, route, status, last_seq, created_at`

func scanDevice(sc scanner) (store.Device, error) {
	var (
		d  store.Device
		at int64
	)
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, &at)
	d.CreatedAt = fromDB(at)
	return d, err
}

func scanDeviceKey(sc scanner) (store.Device, error) {
	var (
		d  store.Device
		at int64
	)
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, &at, &d.Key)
	d.CreatedAt = fromDB(at)
	return d, err
}

const tapCols = `device, seq, card, at, kind, route, stop, offline, status, reason, fare, balance, transfer_id, batch`

func scanTap(sc scanner) (store.TapRecord, error) {
	var (
		t  store.TapRecord
		at int64
	)
	err := sc.Scan(&t.Device, &t.Seq, &t.Card, &at, &t.Kind, &t.Route, &t.Stop, &t.Offline, &t.Status, &t.Reason,
		&t.Fare, &t.Balance, &t.Transfer, &t.Batch)
	t.At = fromDB(at)
	return t, err
}

const denyCols = `version, card, added, reason, at`

func scanDeny(sc scanner) (store.DenyChange, error) {
	var (
		d  store.DenyChange
		at int64
	)
	err := sc.Scan(&d.Version, &d.Card, &d.Add, &d.Reason, &at)
	d.At = fromDB(at)
	return d, err
}

func scanRider(sc scanner) (store.RiderState, error) {
	var (
		r  store.RiderState
		at int64
	)
	err := sc.Scan(&r.Card, &r.State, &at)
	r.UpdatedAt = fromDB(at)
	return r, err
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

// GetDevice returns one device with its key, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	d, err := scanDeviceKey(s.r.QueryRowContext(ctx, `SELECT `+deviceCols+`, key FROM devices WHERE id = ?`, id))
	if err == sql.ErrNoRows {
		return store.Device{}, fmt.Errorf("sqlite: device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("sqlite: device %q: %w", id, err)
	}
	return d, nil
}

// ListDevices lists an operator's devices by id, or every device when
// operator is "", without their keys.
func (s *Store) ListDevices(ctx context.Context, operator string) ([]store.Device, error) {
	var (
		out []store.Device
		err error
	)
	if operator == "" {
		out, err = collect(ctx, s, scanDevice, `SELECT `+deviceCols+` FROM devices ORDER BY id`)
	} else {
		out, err = collect(ctx, s, scanDevice, `SELECT `+deviceCols+` FROM devices WHERE operator = ? ORDER BY id`,
			operator)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: list devices: %w", err)
	}
	return out, nil
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

// LoadDevices returns the devices with the given ids, keys included.
func (s *Store) LoadDevices(ctx context.Context, ids []string) ([]store.Device, error) {
	out, err := loadIn(ctx, s, ids, 1, one, scanDeviceKey,
		`SELECT `+deviceCols+`, key FROM devices WHERE id IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load devices: %w", err)
	}
	return out, nil
}

// LoadTaps returns the taps with the given keys, each once however often
// it is asked for: the keys go in several statements, and a key repeated
// across two of them would otherwise come back twice.
func (s *Store) LoadTaps(ctx context.Context, keys []store.TapKey) ([]store.TapRecord, error) {
	seen := make(map[store.TapKey]bool, len(keys))
	keys = slices.DeleteFunc(slices.Clone(keys), func(k store.TapKey) bool {
		if seen[k] {
			return true
		}
		seen[k] = true
		return false
	})
	out, err := loadIn(ctx, s, keys, 2, func(k store.TapKey) []any { return []any{k.Device, k.Seq} }, scanTap,
		`SELECT `+tapCols+` FROM taps WHERE (device, seq) IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load taps: %w", err)
	}
	return out, nil
}

// LoadRiderStates returns the rider states of the given cards.
func (s *Store) LoadRiderStates(ctx context.Context, cards []string) ([]store.RiderState, error) {
	out, err := loadIn(ctx, s, cards, 1, one, scanRider,
		`SELECT card, state, updated_at FROM rider_states WHERE card IN (%s)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load rider states: %w", err)
	}
	return out, nil
}

// DenyList returns the current deny list and its version. Changes are only
// ever appended, so the list is read as of the version read first: a
// change committed in between is left out, and the pair stays consistent.
func (s *Store) DenyList(ctx context.Context) (int64, []store.DenyChange, error) {
	var version int64
	if err := s.r.QueryRowContext(ctx, lastDenyVersion).Scan(&version); err != nil {
		return 0, nil, fmt.Errorf("sqlite: deny list: %w", err)
	}
	if version == 0 {
		return 0, nil, nil
	}
	out, err := collect(ctx, s, scanDeny, `SELECT `+denyCols+` FROM deny_changes AS d
		WHERE d.added = 1 AND d.version = (SELECT max(version) FROM deny_changes
			WHERE card = d.card AND version <= ?)
		ORDER BY d.card`, version)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite: deny list: %w", err)
	}
	return version, out, nil
}

// DenyChangesSince returns up to limit changes above version since,
// ascending. A limit of zero or less means no limit.
func (s *Store) DenyChangesSince(ctx context.Context, since int64, limit int) ([]store.DenyChange, error) {
	out, err := collect(ctx, s, scanDeny, `SELECT `+denyCols+` FROM deny_changes WHERE version > ?
		ORDER BY version LIMIT ?`, since, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: deny changes since %d: %w", since, err)
	}
	return out, nil
}

// DeviceTaps returns up to limit of a device's taps above afterSeq,
// ascending. A limit of zero or less means no limit.
func (s *Store) DeviceTaps(ctx context.Context, device string, afterSeq int64, limit int) ([]store.TapRecord, error) {
	out, err := collect(ctx, s, scanTap, `SELECT `+tapCols+` FROM taps WHERE device = ? AND seq > ?
		ORDER BY seq LIMIT ?`, device, afterSeq, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: taps of device %q: %w", device, err)
	}
	return out, nil
}
