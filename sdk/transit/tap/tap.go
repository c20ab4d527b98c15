// Package tap is a transit tap as a validator records it, and the MAC that
// proves the validator made it.
//
// Each validator holds a secret key of KeySize bytes, issued by the hub
// when the device is registered. It numbers its taps 1, 2, 3, … and signs
// each with HMAC-SHA-256 over the tap's canonical form, truncated to 8
// bytes and written as 16 lower-case hex digits. The hub, which keeps every
// device's key, checks the MAC of every tap it is given: a forged tap, or
// one altered on the way (another card, an earlier time, another stop), is
// refused. The validator, the transit plugin and the hub share this package
// so that all three agree on every byte.
package tap

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// KeySize is the length of a device key in bytes.
const KeySize = 32

// MACSize is the length of a tap's MAC in hex digits (8 bytes).
const MACSize = 16

// Kinds of tap.
const (
	// On is boarding (bus) or entering (metro gate).
	On = "on"
	// Off is alighting or leaving, on networks that price by distance or
	// zone.
	Off = "off"
)

// Tap is one card presented to one validator.
type Tap struct {
	// Device is the validator's id, as registered with the hub.
	Device string `json:"device"`
	// Seq numbers the device's taps from 1 without gaps; (Device, Seq)
	// identifies a tap, so a tap uploaded twice is posted once.
	Seq int64 `json:"seq"`
	// Card is the city card's number.
	Card string `json:"card"`
	// At is when the card was presented, by the validator's clock.
	At time.Time `json:"at"`
	// Kind is On or Off.
	Kind string `json:"kind"`
	// Route and Stop say where: the route (bus line, metro line) and the
	// stop or station, as the network's fare table names them.
	Route string `json:"route"`
	Stop  string `json:"stop"`
	// Offline is set when the validator decided on its own, without the
	// hub's answer, and uploads the tap later.
	Offline bool `json:"offline,omitempty"`
	// MAC is the tap's MAC, 16 hex digits.
	MAC string `json:"mac"`
}

// Canonical is the byte string the MAC covers: every field but the MAC, in
// a fixed order, separated by '|', the time in UTC with nanoseconds. No
// field may hold a '|' (Check refuses one), so two taps never share a
// canonical form.
func (t Tap) Canonical() []byte {
	b := make([]byte, 0, 80+len(t.Device)+len(t.Card)+len(t.Route)+len(t.Stop))
	b = append(b, "citycard-tap-v1|"...)
	b = append(b, t.Device...)
	b = append(b, '|')
	b = strconv.AppendInt(b, t.Seq, 10)
	b = append(b, '|')
	b = append(b, t.Card...)
	b = append(b, '|')
	b = t.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '|')
	b = append(b, t.Kind...)
	b = append(b, '|')
	b = append(b, t.Route...)
	b = append(b, '|')
	b = append(b, t.Stop...)
	b = append(b, '|')
	return strconv.AppendBool(b, t.Offline)
}

// ErrBadKey is returned for a key that is not KeySize bytes.
var ErrBadKey = errors.New("tap: a device key is 32 bytes")

// Sign returns t's MAC under key.
func Sign(key []byte, t Tap) (string, error) {
	if len(key) != KeySize {
		return "", ErrBadKey
	}
	return hex.EncodeToString(sum(key, t)), nil
}

// sum is the MAC's bytes: the first MACSize/2 of the HMAC.
func sum(key []byte, t Tap) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(t.Canonical())
	return m.Sum(nil)[:MACSize/2]
}

// Verify reports whether t.MAC is t's MAC under key, in either case of hex
// digit. It takes the same time whichever digit is wrong.
func Verify(key []byte, t Tap) bool {
	if len(key) != KeySize || len(t.MAC) != MACSize {
		return false
	}
	var got [MACSize / 2]byte
	if _, err := hex.Decode(got[:], []byte(t.MAC)); err != nil {
		return false
	}
	return hmac.Equal(sum(key, t), got[:])
}

// Check returns what is wrong with t's fields, with the JSON name of the
// first field at fault, or "" and nil when nothing is. It does not check
// the MAC.
func Check(t Tap) (field string, err error) {
	bad := func(f, msg string) (string, error) { return f, errors.New(msg) }
	if err := CheckDevice(t.Device); err != nil {
		return "device", err
	}
	switch {
	case t.Seq < 1:
		return bad("seq", "seq must be 1 or more")
	case len(t.Card) < 12 || len(t.Card) > 19 || strings.Trim(t.Card, "0123456789") != "":
		return bad("card", "card must be 12 to 19 digits")
	case t.At.IsZero():
		return bad("at", "at is required")
	case t.Kind != On && t.Kind != Off:
		return bad("kind", `kind must be "on" or "off"`)
	case t.Route == "" || len(t.Route) > 32 || !printable(t.Route, true):
		return bad("route", "route must be 1 to 32 printable ASCII characters without '|'")
	case len(t.Stop) > 32 || !printable(t.Stop, true):
		return bad("stop", "stop must be at most 32 printable ASCII characters without '|'")
	case len(t.MAC) != MACSize || strings.Trim(strings.ToLower(t.MAC), "0123456789abcdef") != "":
		return bad("mac", "mac must be 16 hex digits")
	}
	return "", nil
}

// CheckDevice returns what is wrong with a device id, or nil: 1 to 64
// printable ASCII characters without spaces or '|'.
func CheckDevice(id string) error {
	if id == "" || len(id) > 64 || !printable(id, false) {
		return errors.New("device must be 1 to 64 printable ASCII characters without spaces or '|'")
	}
	return nil
}

// printable reports whether s is printable ASCII without '|' (and without
// spaces unless spaces is set): the same rule as the schema's patterns in
// schemas/msg-transit-taps-v1.json, so a tap Check accepts is never refused
// by the schema and sinks a batch.
func printable(s string, spaces bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '|' || c > '~' || c < ' ' || (c == ' ' && !spaces) {
			return false
		}
	}
	return true
}
