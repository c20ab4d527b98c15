package reads

import (
	"context"

	"github.com/citycard/citycard/hub/internal/store"
)

// Columns of the transit tables, in the order the scanners read them.
const (
	DeviceCols = `id, operator, mode, route, status, last_seq, created_at`
	TapCols    = `device, seq, card, at, kind, route, stop, offline, status, reason, fare, balance, transfer_id, batch`
	DenyCols   = `version, card, added, reason, at`
)

// LastDenyVersion reads the highest deny change version, 0 before the
// first.
const LastDenyVersion = `SELECT coalesce(max(version), 0) FROM deny_changes`

// DenyListQuery reads the deny list as of a version: each card's latest
// change up to it, where that change is an add.
const DenyListQuery = `SELECT ` + DenyCols + ` FROM deny_changes AS d
		WHERE d.added AND d.version = (SELECT max(version) FROM deny_changes
			WHERE card = d.card AND version <= ?)
		ORDER BY d.card`

func scanDevice(sc scanner) (store.Device, error) {
	var d store.Device
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, Time(&d.CreatedAt))
	return d, err
}

func scanDeviceKey(sc scanner) (store.Device, error) {
	var d store.Device
	err := sc.Scan(&d.ID, &d.Operator, &d.Mode, &d.Route, &d.Status, &d.LastSeq, Time(&d.CreatedAt), &d.Key)
	return d, err
}

func scanTap(sc scanner) (store.TapRecord, error) {
	var t store.TapRecord
	err := sc.Scan(&t.Device, &t.Seq, &t.Card, Time(&t.At), &t.Kind, &t.Route, &t.Stop, &t.Offline, &t.Status,
		&t.Reason, &t.Fare, &t.Balance, &t.Transfer, &t.Batch)
	return t, err
}

func scanDeny(sc scanner) (store.DenyChange, error) {
	var d store.DenyChange
	err := sc.Scan(&d.Version, &d.Card, &d.Add, &d.Reason, Time(&d.At))
	return d, err
}

func scanRider(sc scanner) (store.RiderState, error) {
	var s store.RiderState
	err := sc.Scan(&s.Card, &s.State, Time(&s.UpdatedAt))
	return s, err
}

// GetDevice returns one device with its key, or an error wrapping
// store.ErrNotFound.
func (r *Reader) GetDevice(ctx context.Context, id string) (store.Device, error) {
	d, err := get(ctx, r, scanDeviceKey, `SELECT `+DeviceCols+`, key FROM devices WHERE id = ?`, id)
	if err != nil {
		return store.Device{}, r.errorf("device %q: %w", id, err)
	}
	return d, nil
}

// ListDevices lists an operator's devices by id, or every device when
// operator is "", without their keys.
func (r *Reader) ListDevices(ctx context.Context, operator string) ([]store.Device, error) {
	q, args := `SELECT `+DeviceCols+` FROM devices ORDER BY id`, []any(nil)
	if operator != "" {
		q, args = `SELECT `+DeviceCols+` FROM devices WHERE operator = ? ORDER BY id`, []any{operator}
	}
	out, err := collect(ctx, r, scanDevice, q, args...)
	if err != nil {
		return nil, r.errorf("list devices: %w", err)
	}
	return out, nil
}

// LoadDevices returns the devices with the given ids, keys included.
func (r *Reader) LoadDevices(ctx context.Context, ids []string) ([]store.Device, error) {
	out, err := load(ctx, r, stringKeys("id", ids), scanDeviceKey, `SELECT `+DeviceCols+`, key FROM devices WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load devices: %w", err)
	}
	return out, nil
}

// LoadTaps returns the taps with the given keys.
func (r *Reader) LoadTaps(ctx context.Context, keys []store.TapKey) ([]store.TapRecord, error) {
	devices, seqs := make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		devices[i], seqs[i] = k.Device, k.Seq
	}
	set := pairKeys("device", "text", devices, "seq", "bigint", seqs)
	out, err := load(ctx, r, set, scanTap, `SELECT `+TapCols+` FROM taps WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load taps: %w", err)
	}
	return out, nil
}

// LoadRiderStates returns the rider states of the given cards.
func (r *Reader) LoadRiderStates(ctx context.Context, cards []string) ([]store.RiderState, error) {
	out, err := load(ctx, r, stringKeys("card", cards), scanRider,
		`SELECT card, state, updated_at FROM rider_states WHERE {keys}`)
	if err != nil {
		return nil, r.errorf("load rider states: %w", err)
	}
	return out, nil
}

// DenyList returns the current deny list and its version. Changes are only
// ever appended, so the list is read as of the version read first: a
// change committed in between is left out, and the pair stays consistent.
func (r *Reader) DenyList(ctx context.Context) (int64, []store.DenyChange, error) {
	version, err := get(ctx, r, func(sc scanner) (int64, error) {
		var v int64
		return v, sc.Scan(&v)
	}, LastDenyVersion)
	if err != nil {
		return 0, nil, r.errorf("deny list: %w", err)
	}
	if version == 0 {
		return 0, nil, nil
	}
	out, err := collect(ctx, r, scanDeny, DenyListQuery, version)
	if err != nil {
		return 0, nil, r.errorf("deny list: %w", err)
	}
	return version, out, nil
}

// DenyChangesSince returns up to limit changes above version since,
// ascending. A limit of zero or less means no limit.
func (r *Reader) DenyChangesSince(ctx context.Context, since int64, n int) ([]store.DenyChange, error) {
	out, err := collect(ctx, r, scanDeny, `SELECT `+DenyCols+` FROM deny_changes WHERE version > ?
		ORDER BY version LIMIT ?`, since, limit(n))
	if err != nil {
		return nil, r.errorf("deny changes since %d: %w", since, err)
	}
	return out, nil
}

// DeviceTaps returns up to limit of a device's taps above afterSeq,
// ascending. A limit of zero or less means no limit.
func (r *Reader) DeviceTaps(ctx context.Context, device string, afterSeq int64, n int) ([]store.TapRecord, error) {
	out, err := collect(ctx, r, scanTap, `SELECT `+TapCols+` FROM taps WHERE device = ? AND seq > ?
		ORDER BY seq LIMIT ?`, device, afterSeq, limit(n))
	if err != nil {
		return nil, r.errorf("taps of device %q: %w", device, err)
	}
	return out, nil
}
