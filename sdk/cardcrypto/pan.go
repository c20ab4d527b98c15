package cardcrypto

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// PAN is a primary account number that never formats in clear. Printing it
// with any fmt verb, logging it with slog, or marshalling it to JSON or text
// gives the masked form (first 6 and last 4 digits). The digits sit behind a
// pointer so that even reflection-based printing of a struct holding a PAN in
// an unexported field shows an address, not the number. Reveal returns the
// clear digits for the few places that need them (PIN blocks, CVV, the wire).
type PAN struct {
	p *panDigits
}

type panDigits struct{ s string }

// ParsePAN accepts 12 to 19 decimal digits with a valid Luhn check digit.
// The error never contains the number.
func ParsePAN(s string) (PAN, error) {
	if len(s) < 12 || len(s) > 19 || !isDigits(s) {
		return PAN{}, newErr("ParsePAN", ErrInvalidPAN, fmt.Sprintf("want 12 to 19 digits, got %d characters", len(s)))
	}
	if !LuhnValid(s) {
		return PAN{}, newErr("ParsePAN", ErrLuhn, "card "+MaskPAN(s))
	}
	return PAN{p: &panDigits{s: s}}, nil
}

// Reveal returns the clear card number. Use it only to build wire data or
// cryptographic input, never to log or store.
func (p PAN) Reveal() string {
	if p.p == nil {
		return ""
	}
	return p.p.s
}

// IsZero reports whether p holds no number.
func (p PAN) IsZero() bool { return p.p == nil || p.p.s == "" }

// Masked returns the number with all but the first 6 and last 4 digits
// replaced by '*'.
func (p PAN) Masked() string { return MaskPAN(p.Reveal()) }

// Last4 returns the last four digits, as stored beside a card token.
func (p PAN) Last4() string {
	s := p.Reveal()
	if len(s) < 4 {
		return ""
	}
	return s[len(s)-4:]
}

// BIN returns the first six digits (the issuer identification number).
func (p PAN) BIN() string {
	s := p.Reveal()
	if len(s) < 6 {
		return ""
	}
	return s[:6]
}

// HasPrefix reports whether the number starts with prefix, for routing by
// card number range.
func (p PAN) HasPrefix(prefix string) bool { return strings.HasPrefix(p.Reveal(), prefix) }

// Equal compares two card numbers in constant time.
func (p PAN) Equal(q PAN) bool {
	return subtle.ConstantTimeCompare([]byte(p.Reveal()), []byte(q.Reveal())) == 1
}

// String returns the masked number.
func (p PAN) String() string { return p.Masked() }

// GoString returns the masked number, for %#v.
func (p PAN) GoString() string { return "cardcrypto.PAN(" + p.Masked() + ")" }

// Format masks the number for every fmt verb.
func (p PAN) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(p.GoString()))
		return
	}
	_, _ = f.Write([]byte(p.Masked()))
}

// LogValue masks the number in slog output.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }

// MarshalJSON writes the masked number.
func (p PAN) MarshalJSON() ([]byte, error) { return json.Marshal(p.Masked()) }

// MarshalText writes the masked number.
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.Masked()), nil }

// MaskPAN keeps the first 6 and last 4 digits of a card number and replaces
// the rest with '*'. Numbers shorter than 13 characters keep only their last
// 4 (and nothing when 8 or shorter), so no short number is left readable.
func MaskPAN(s string) string {
	n := len(s)
	switch {
	case n == 0:
		return ""
	case n <= 8:
		return strings.Repeat("*", n)
	case n < 13:
		return strings.Repeat("*", n-4) + s[n-4:]
	default:
		return s[:6] + strings.Repeat("*", n-10) + s[n-4:]
	}
}
