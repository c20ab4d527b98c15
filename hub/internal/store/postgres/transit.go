package postgres

import (
	"bytes"
	"context"
	"errors"
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

const deviceCols = `id, operator, mode, route, status, last_seq, created_at`

func scanDevice(sc scanner) (store.Device, error) {
	var d store.Device
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, &d.CreatedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

func scanDeviceKey(sc scanner) (store.Device, error) {
	var d store.Device
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, &d.CreatedAt, &d.Key)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

const tapCols = `device, seq, card, at, kind, route, stop, offline, status, reason, fare, balance, transfer_id, batch`

func scanTap(sc scanner) (store.TapRecord, error) {
	var t store.TapRecord
	err := sc.Scan(&t.Device, &t.Seq, &t.Card, &t.At, &t.Kind, &t.Route, &t.Stop, &t.Offline, &t.Status, &t.Reason,
		&t.Fare, &t.Balance, &t.Transfer, &t.Batch)
	t.At = t.At.UTC()
	return t, err
}

const denyCols = `version, card, added, reason, at`

func scanDeny(sc scanner) (store.DenyChange, error) {
	var d store.DenyChange
	err := sc.Scan(&d.Version, &d.Card, &d.Add, &d.Reason, &d.At)
	d.At = d.At.UTC()
	return d, err
}

func scanRider(sc scanner) (store.RiderState, error) {
	var r store.RiderState
	err := sc.Scan(&r.Card, &r.State, &r.UpdatedAt)
	r.UpdatedAt = r.UpdatedAt.UTC()
	return r, err
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

// GetDevice returns one device with its key, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	d, err := scanDeviceKey(s.pool.QueryRow(ctx, `SELECT `+deviceCols+`, key FROM devices WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Device{}, fmt.Errorf("postgres: device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("postgres: device %q: %w", id, err)
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
		out, err = collect(ctx, s, scanDevice, `SELECT `+deviceCols+` FROM devices WHERE operator = $1 ORDER BY id`,
			operator)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices: %w", err)
	}
	return out, nil
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

// LoadDevices returns the devices with the given ids, keys included.
func (s *Store) LoadDevices(ctx context.Context, ids []string) ([]store.Device, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := collect(ctx, s, scanDeviceKey, `SELECT `+deviceCols+`, key FROM devices WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: load devices: %w", err)
	}
	return out, nil
}

// LoadTaps returns the taps with the given keys, in one statement.
func (s *Store) LoadTaps(ctx context.Context, keys []store.TapKey) ([]store.TapRecord, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	devices, seqs := make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		devices[i], seqs[i] = k.Device, k.Seq
	}
	// A semi-join, so a key asked for twice still yields one record.
	out, err := collect(ctx, s, scanTap, `SELECT `+tapCols+` FROM taps
		WHERE (device, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))`, devices, seqs)
	if err != nil {
		return nil, fmt.Errorf("postgres: load taps: %w", err)
	}
	return out, nil
}

// LoadRiderStates returns the rider states of the given cards.
func (s *Store) LoadRiderStates(ctx context.Context, cards []string) ([]store.RiderState, error) {
	if len(cards) == 0 {
		return nil, nil
	}
	out, err := collect(ctx, s, scanRider, `SELECT card, state, updated_at FROM rider_states WHERE card = ANY($1)`,
		cards)
	if err != nil {
		return nil, fmt.Errorf("postgres: load rider states: %w", err)
	}
	return out, nil
}

// DenyList returns the current deny list and its version. Changes are only
// ever appended, so the list is read as of the version read first: a
// change committed in between is left out, and the pair stays consistent.
func (s *Store) DenyList(ctx context.Context) (int64, []store.DenyChange, error) {
	var version int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM deny_changes`).Scan(&version); err != nil {
		return 0, nil, fmt.Errorf("postgres: deny list: %w", err)
	}
	if version == 0 {
		return 0, nil, nil
	}
	out, err := collect(ctx, s, scanDeny, `SELECT `+denyCols+` FROM (
			SELECT DISTINCT ON (card) `+denyCols+` FROM deny_changes WHERE version <= $1
			ORDER BY card, version DESC) AS latest
		WHERE added ORDER BY card`, version)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: deny list: %w", err)
	}
	return version, out, nil
}

// DenyChangesSince returns up to limit changes above version since,
// ascending. A limit of zero or less means no limit.
func (s *Store) DenyChangesSince(ctx context.Context, since int64, limit int) ([]store.DenyChange, error) {
	out, err := collect(ctx, s, scanDeny, `SELECT `+denyCols+` FROM deny_changes WHERE version > $1
		ORDER BY version LIMIT $2`, since, pgLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: deny changes since %d: %w", since, err)
	}
	return out, nil
}

// DeviceTaps returns up to limit of a device's taps above afterSeq,
// ascending. A limit of zero or less means no limit.
func (s *Store) DeviceTaps(ctx context.Context, device string, afterSeq int64, limit int) ([]store.TapRecord, error) {
	out, err := collect(ctx, s, scanTap, `SELECT `+tapCols+` FROM taps WHERE device = $1 AND seq > $2
		ORDER BY seq LIMIT $3`, device, afterSeq, pgLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: taps of device %q: %w", device, err)
	}
	return out, nil
}
