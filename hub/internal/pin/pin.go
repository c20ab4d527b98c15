// Package pin checks, hashes and verifies cardholder PINs. Hashes are
// argon2id in the PHC string format, so the cost parameters travel with each
// hash and can be raised later without invalidating stored PINs.
package pin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"

	"github.com/citycard/citycard/hub/internal/fault"
)

// Length is the number of digits in a PIN.
const Length = 6

// Default argon2id cost, the OWASP minimum for argon2id.
const (
	DefaultTime      uint32 = 2
	DefaultMemoryKiB uint32 = 19 * 1024
	DefaultThreads   uint8  = 1
)

const (
	saltLen = 16
	keyLen  = 32
)

// Bounds on parameters read from a stored hash, so a corrupted or forged
// record cannot make Verify allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
)

var (
	// ErrFormat is the cause inside the *fault.Error for a malformed PIN.
	ErrFormat = errors.New("pin: a PIN is exactly 6 digits")
	// ErrMalformedHash reports a stored hash that is not one this package wrote.
	ErrMalformedHash = errors.New("pin: malformed hash")
)

type cost struct {
	time, memory uint32
	threads      uint8
}

var current atomic.Pointer[cost]

func init() {
	current.Store(&cost{time: DefaultTime, memory: DefaultMemoryKiB, threads: DefaultThreads})
}

// SetCostForTesting makes Hash use t passes over mKiB KiB, for test suites
// that hash many PINs; production code must not call it. Verify is
// unaffected: it always uses the cost recorded in the hash. It returns a
// function restoring the previous cost, for t.Cleanup. It panics if t is 0
// or mKiB is below argon2's minimum of 8 KiB.
func SetCostForTesting(t, mKiB uint32) (restore func()) {
	if t == 0 || mKiB < 8*uint32(DefaultThreads) {
		panic(fmt.Sprintf("pin: cost t=%d m=%d KiB is below argon2's minimum", t, mKiB))
	}
	prev := current.Swap(&cost{time: t, memory: mKiB, threads: DefaultThreads})
	return func() { current.Store(prev) }
}

// ValidFormat checks that pin is exactly six ASCII digits. The error is a
// *fault.Error with code pin_invalid_format wrapping ErrFormat.
func ValidFormat(pin string) error {
	if len(pin) != Length {
		return formatError()
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return formatError()
		}
	}
	return nil
}

func formatError() error {
	return &fault.Error{Code: fault.PINInvalidFormat, Detail: "a PIN is exactly 6 digits", Err: ErrFormat}
}

// Hash returns the argon2id hash of pin with a fresh random salt, encoded as
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>.
func Hash(pin string) (string, error) {
	if err := ValidFormat(pin); err != nil {
		return "", err
	}
	c := current.Load()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pin: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pin), salt, c.time, c.memory, c.threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, c.memory, c.time, c.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding.Strict()

// Verify reports whether pin matches encoded, a hash from Hash, using the
// cost recorded in encoded and comparing in constant time. A wrong PIN is
// (false, nil); a malformed PIN is a pin_invalid_format *fault.Error; a hash
// this package cannot read is an error wrapping ErrMalformedHash.
func Verify(encoded, pin string) (bool, error) {
	if err := ValidFormat(pin); err != nil {
		return false, err
	}
	h, err := parse(encoded)
	if err != nil {
		return false, err
	}
	return h.matches([]byte(pin)), nil
}

// matches derives a key from secret with h's own salt and cost.
func (h decoded) matches(secret []byte) bool {
	key := argon2.IDKey(secret, h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

type decoded struct {
	cost
	salt, key []byte
}

func parse(encoded string) (decoded, error) {
	var h decoded
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, fmt.Errorf("%w: not an argon2id PHC string", ErrMalformedHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, fmt.Errorf("%w: version %q", ErrMalformedHash, parts[2])
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, fmt.Errorf("%w: parameters %q", ErrMalformedHash, parts[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return h, fmt.Errorf("%w: parameters %q", ErrMalformedHash, parts[3])
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return h, fmt.Errorf("%w: parameter %s: %v", ErrMalformedHash, name, err)
		}
		vals[i] = n
	}
	m, t, p := vals[0], vals[1], vals[2]
	if p < 1 || p > maxThreads || t < 1 || t > maxTime || m < 8*p || m > maxMemoryKiB {
		return h, fmt.Errorf("%w: cost m=%d,t=%d,p=%d out of range", ErrMalformedHash, m, t, p)
	}
	h.cost = cost{time: uint32(t), memory: uint32(m), threads: uint8(p)}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return h, fmt.Errorf("%w: salt", ErrMalformedHash)
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return h, fmt.Errorf("%w: hash", ErrMalformedHash)
	}
	return h, nil
}
