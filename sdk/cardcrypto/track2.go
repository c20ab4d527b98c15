package cardcrypto

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Track2 is track 2 equivalent data: PAN, separator, expiry (YYMM), service
// code and discretionary data. It formats masked, like PAN.
type Track2 struct {
	PAN           PAN
	Expiry        Expiry
	ServiceCode   ServiceCode
	Discretionary DiscretionaryData
}

// DiscretionaryData is the issuer's part of track 2. It may hold a PIN
// verification value or a CVV, so it formats as its length only.
type DiscretionaryData struct{ p *string }

// Reveal returns the clear discretionary data.
func (d DiscretionaryData) Reveal() string {
	if d.p == nil {
		return ""
	}
	return *d.p
}

// String gives the length only.
func (d DiscretionaryData) String() string { return fmt.Sprintf("[%d digits]", len(d.Reveal())) }

// Format gives the length only, for every verb.
func (d DiscretionaryData) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

// maxTrack2 is the ISO 7813 limit on track 2 characters between the sentinels.
const maxTrack2 = 37

// ParseTrack2 parses track 2 equivalent data as carried in ISO 8583 field 35
// or EMV tag 57: start and end sentinels (';' and '?') are optional, the
// separator is '=' or 'D', and trailing 'F' nibble padding is ignored. The
// card number must pass the Luhn check. Errors never contain the data.
func ParseTrack2(s string) (Track2, error) {
	const op = "ParseTrack2"
	s = strings.TrimPrefix(s, ";")
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i] // the end sentinel may be followed by an LRC character
	}
	s = strings.TrimRight(s, "Ff")
	if s == "" {
		return Track2{}, newErr(op, ErrInvalidTrack2, "empty")
	}
	if len(s) > maxTrack2 {
		return Track2{}, newErr(op, ErrInvalidTrack2, fmt.Sprintf("%d characters, at most %d allowed", len(s), maxTrack2))
	}
	sep := strings.IndexAny(s, "=Dd")
	if sep < 0 {
		return Track2{}, newErr(op, ErrInvalidTrack2, "no field separator ('=' or 'D')")
	}
	pan, err := ParsePAN(s[:sep])
	if err != nil {
		return Track2{}, newErr(op, ErrInvalidTrack2, "card number: "+kindText(err))
	}
	rest := s[sep+1:]
	if len(rest) < 7 {
		return Track2{}, newErr(op, ErrInvalidTrack2, "expiry and service code missing after the separator")
	}
	if !isDigits(rest) {
		return Track2{}, newErr(op, ErrInvalidTrack2, "non-digit after the separator")
	}
	exp, err := ParseExpiry(rest[:4])
	if err != nil {
		return Track2{}, newErr(op, ErrInvalidTrack2, "expiry: "+kindText(err))
	}
	sc, err := ParseServiceCode(rest[4:7])
	if err != nil {
		return Track2{}, newErr(op, ErrInvalidTrack2, "service code: "+kindText(err))
	}
	disc := rest[7:]
	return Track2{PAN: pan, Expiry: exp, ServiceCode: sc, Discretionary: DiscretionaryData{p: &disc}}, nil
}

// kindText gives the safe description of one of this package's errors.
func kindText(err error) string {
	if e, ok := err.(*Error); ok {
		if e.Detail != "" {
			return e.Kind.Error() + " (" + e.Detail + ")"
		}
		return e.Kind.Error()
	}
	return "invalid"
}

// Reveal returns the clear track 2 string with '=' as separator.
func (t Track2) Reveal() string {
	return t.PAN.Reveal() + "=" + t.Expiry.YYMM() + string(t.ServiceCode) + t.Discretionary.Reveal()
}

// String masks the card number and hides the discretionary data.
func (t Track2) String() string {
	return t.PAN.Masked() + "=" + t.Expiry.YYMM() + string(t.ServiceCode) + t.Discretionary.String()
}

// Format masks for every fmt verb.
func (t Track2) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue masks in slog output.
func (t Track2) LogValue() slog.Value { return slog.StringValue(t.String()) }

// CheckExpiry returns ErrExpired when the card is past its expiry month at now.
func (t Track2) CheckExpiry(now time.Time) error { return t.Expiry.Check(now) }

// Expiry is a card's expiry month; the card is valid through its last day.
type Expiry struct {
	Year  int // four digits
	Month int // 1 to 12
}

// ParseExpiry parses YYMM (years 2000 to 2099).
func ParseExpiry(yymm string) (Expiry, error) {
	if len(yymm) != 4 || !isDigits(yymm) {
		return Expiry{}, newErr("ParseExpiry", ErrInvalidExpiry, "want YYMM")
	}
	y := int(yymm[0]-'0')*10 + int(yymm[1]-'0')
	m := int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	if m < 1 || m > 12 {
		return Expiry{}, newErr("ParseExpiry", ErrInvalidExpiry, fmt.Sprintf("month %02d", m))
	}
	return Expiry{Year: 2000 + y, Month: m}, nil
}

// YYMM formats the expiry as on the card and in ISO 8583 field 14.
func (e Expiry) YYMM() string { return fmt.Sprintf("%02d%02d", e.Year%100, e.Month) }

// Expired reports whether the card has expired at now (in now's location):
// the card is good through the last day of its expiry month.
func (e Expiry) Expired(now time.Time) bool {
	firstInvalid := time.Date(e.Year, time.Month(e.Month)+1, 1, 0, 0, 0, 0, now.Location())
	return !now.Before(firstInvalid)
}

// Check returns an error wrapping ErrExpired when the card has expired at now.
func (e Expiry) Check(now time.Time) error {
	if e.Expired(now) {
		return newErr("Expiry.Check", ErrExpired, "expired "+e.YYMM())
	}
	return nil
}

// ServiceCode is the three-digit service code of a magnetic stripe (ISO/IEC
// 7813): digit 1 interchange and technology, digit 2 authorisation
// processing, digit 3 allowed services and PIN requirements.
type ServiceCode string

// ParseServiceCode accepts exactly three decimal digits.
func ParseServiceCode(s string) (ServiceCode, error) {
	if len(s) != 3 || !isDigits(s) {
		return "", newErr("ParseServiceCode", ErrInvalidServiceCode, "want three digits")
	}
	return ServiceCode(s), nil
}

func (c ServiceCode) digit(i int) byte {
	if len(c) != 3 {
		return 0
	}
	return c[i]
}

// International reports whether the card may be used abroad (digit 1 is 1 or 2).
func (c ServiceCode) International() bool { d := c.digit(0); return d == '1' || d == '2' }

// Chip reports whether the card carries a chip that should be used when the
// terminal can read it (digit 1 is 2 or 6): a swipe of such a card is a
// fallback the acquirer may refuse.
func (c ServiceCode) Chip() bool { d := c.digit(0); return d == '2' || d == '6' }

// Test reports a test card (digit 1 is 9).
func (c ServiceCode) Test() bool { return c.digit(0) == '9' }

// OnlineOnly reports that every transaction must be authorised online by the
// issuer (digit 2 is 2 or 4).
func (c ServiceCode) OnlineOnly() bool { d := c.digit(1); return d == '2' || d == '4' }

// PINRequired reports that a PIN must be entered (digit 3 is 0, 3 or 5).
func (c ServiceCode) PINRequired() bool { d := c.digit(2); return d == '0' || d == '3' || d == '5' }

// GoodsAndServicesOnly reports that cash is not allowed (digit 3 is 2, 5 or 7).
func (c ServiceCode) GoodsAndServicesOnly() bool {
	d := c.digit(2)
	return d == '2' || d == '5' || d == '7'
}

// ATMOnly reports an ATM-only card (digit 3 is 3).
func (c ServiceCode) ATMOnly() bool { return c.digit(2) == '3' }

// CashOnly reports a cash-only card (digit 3 is 4).
func (c ServiceCode) CashOnly() bool { return c.digit(2) == '4' }

// AllowsPurchase reports whether a POS purchase is allowed at all; a card
// for which it is false is a restricted card for a shop (response code 62 in
// ISO 8583:1987, mapped by the plugins).
func (c ServiceCode) AllowsPurchase() bool {
	if len(c) != 3 || !isDigits(string(c)) {
		return false
	}
	return !c.ATMOnly() && !c.CashOnly() && c.digit(2) != '8' && c.digit(2) != '9'
}
