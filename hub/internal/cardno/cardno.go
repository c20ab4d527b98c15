// Package cardno makes and checks card numbers: an issuer prefix, a serial
// and a Luhn (ISO/IEC 7812) check digit, so a mistyped digit is caught at
// the terminal before the hub is asked.
package cardno

import (
	"errors"
	"fmt"
	"strings"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// DefaultPrefix is the city card's issuer identification number.
const DefaultPrefix = "310099"

// Length of the numbers New makes, and the range Valid accepts (bank cards
// the city's terminals also take run up to 19 digits).
const (
	Length    = 16
	MinLength = 16
	MaxLength = 19
)

// Sentinel causes inside the *fault.Error values Valid returns.
var (
	ErrFormat     = errors.New("cardno: a card number is 16 to 19 digits")
	ErrCheckDigit = errors.New("cardno: check digit does not match")
)

// Luhn reports whether number, two or more ASCII digits, passes the Luhn
// check. Anything else, spaces included, fails.
func Luhn(number string) bool { return cardcrypto.LuhnValid(number) }

// CheckDigit returns the ASCII digit that, appended to partial, makes a
// number that passes Luhn. It returns 0 if partial is empty or holds a
// non-digit.
func CheckDigit(partial string) byte {
	if partial == "" {
		return 0
	}
	d, err := cardcrypto.LuhnCheckDigit(partial)
	if err != nil {
		return 0
	}
	return d
}

// New returns the 16-digit number for serial under prefix: prefix, serial
// zero-padded to fill 15 digits, then the check digit. prefix must be 6 to 8
// digits and serial must fit in the digits left.
func New(prefix string, serial int64) (string, error) {
	if len(prefix) < 6 || len(prefix) > 8 || !digits(prefix) {
		return "", fmt.Errorf("cardno: prefix %q must be 6 to 8 digits", prefix)
	}
	width := Length - 1 - len(prefix)
	limit := int64(1)
	for range width {
		limit *= 10
	}
	if serial < 0 || serial >= limit {
		return "", fmt.Errorf("cardno: serial %d does not fit in %d digits after prefix %s", serial, width, prefix)
	}
	body := fmt.Sprintf("%s%0*d", prefix, width, serial)
	return body + string(CheckDigit(body)), nil
}

// Valid checks that number is 16 to 19 digits and passes Luhn. The error is
// a *fault.Error: invalid_request wrapping ErrFormat, or luhn_failed wrapping
// ErrCheckDigit.
func Valid(number string) error {
	if len(number) < MinLength || len(number) > MaxLength || !digits(number) {
		return &fault.Error{Code: fault.InvalidRequest, Detail: "a card number is 16 to 19 digits", Err: ErrFormat}
	}
	if !Luhn(number) {
		return &fault.Error{Code: fault.LuhnFailed, Detail: "the card number's check digit is wrong", Err: ErrCheckDigit}
	}
	return nil
}

// HasPrefix reports whether number was issued under prefix, telling the
// city's own cards from bank cards. An empty prefix matches nothing.
func HasPrefix(number, prefix string) bool {
	return prefix != "" && digits(prefix) && strings.HasPrefix(number, prefix)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
