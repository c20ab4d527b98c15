// Package cardno makes and checks card numbers: an issuer prefix, a serial
// and a Luhn (ISO/IEC 7812) check digit, so a mistyped digit is caught at
// the terminal before the hub is asked.
package cardno

import (
	"errors"
	"fmt"
	"strings"

	"github.com/citycard/citycard/hub/internal/fault"
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
func Luhn(number string) bool {
	if len(number) < 2 || !digits(number) {
		return false
	}
	return luhnSum(number, false)%10 == 0
}

// CheckDigit returns the ASCII digit that, appended to partial, makes a
// number that passes Luhn. It returns 0 if partial is empty or holds a
// non-digit.
func CheckDigit(partial string) byte {
	if partial == "" || !digits(partial) {
		return 0
	}
	// The check digit will sit to the right, so partial's last digit is doubled.
	return byte('0' + (10-luhnSum(partial, true)%10)%10)
}

// luhnSum adds the digits right to left, doubling every second one; double
// says whether the rightmost digit is doubled.
func luhnSum(s string, double bool) int {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum
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
