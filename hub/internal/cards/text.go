package cards

import (
	"fmt"
	"unicode/utf8"

	"github.com/citycard/citycard/hub/internal/fault"
)

// Maximum lengths, in characters, of the text a request may carry. The API
// enforces them on every body and schemas/api-*-request.json declares them
// as maxLength; the service checks them again for callers that do not come
// through the API (plugins).
const (
	MaxNameLen    = 128  // a holder's or a merchant's name
	MaxIDLen      = 64   // merchant, terminal, device and product ids; ID numbers; accounts
	MaxPhoneLen   = 32   // a phone number
	MaxMemoLen    = 512  // a free-text memo, the only text that may hold tabs and newlines
	MaxTokenLen   = 128  // message types, references from an acquirer or a partner
	MaxDefaultLen = 1024 // any other text, including the strings of a plugin message's payload
)

// CheckText refuses text that no store can hold alike or that no real value
// contains: invalid UTF-8 (and U+FFFD, which is what a JSON decoder makes of
// it), control characters, and more than max characters. Only memo text
// (multiline) may hold a tab or a newline. field names the input at fault.
func CheckText(field, s string, max int, multiline bool) error {
	if len(s) <= max && plainASCII(s, multiline) {
		return nil // the common case, decided without decoding runes
	}
	n := 0
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			// Either a byte that is not UTF-8 or an escaped lone surrogate:
			// PostgreSQL would refuse one and SQLite keep it.
			return fault.E(fault.InvalidRequest, field, fmt.Sprintf("%s is not valid UTF-8 text (at byte %d)", field, i))
		case isControl(r) && !(multiline && (r == '\n' || r == '\t')):
			return fault.E(fault.InvalidRequest, field, fmt.Sprintf("%s holds the control character %U (at byte %d)", field, r, i))
		}
		n++
	}
	if n > max {
		return fault.E(fault.InvalidRequest, field, fmt.Sprintf("%s is %d characters long; at most %d are allowed", field, n, max))
	}
	return nil
}

// plainASCII reports whether s is printable ASCII (with tabs and newlines
// when multiline), which needs no further look.
func plainASCII(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			continue
		}
		if multiline && (c == '\n' || c == '\t') {
			continue
		}
		return false
	}
	return true
}

// isControl is C0, DEL and C1: U+0000-U+001F and U+007F-U+009F.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }

// textField is one value for checkTexts.
type textField struct {
	name      string
	value     string
	max       int
	multiline bool
}

// checkTexts runs CheckText over fields in order and returns the first
// refusal.
func checkTexts(fields ...textField) error {
	for _, f := range fields {
		if err := CheckText(f.name, f.value, f.max, f.multiline); err != nil {
			return err
		}
	}
	return nil
}

// checkPaymentText checks the text of a payment or hold request, which
// plugins send without passing the API.
func checkPaymentText(req PaymentRequest) error {
	return checkTexts(
		textField{"card", req.Card, MaxIDLen, false},
		textField{"channel", req.Channel, MaxIDLen, false},
		textField{"merchant", req.Merchant, MaxIDLen, false},
		textField{"terminal", req.Terminal, MaxIDLen, false},
		textField{"currency", req.Currency, MaxIDLen, false},
		textField{"pin", req.PIN, MaxIDLen, false},
	)
}

// checkBankText checks what an acquirer plugin says of a bank card payment.
func checkBankText(req BankPaymentRequest) error {
	return checkTexts(
		textField{"card", req.MaskedCard, MaxIDLen, false},
		textField{"channel", req.Channel, MaxIDLen, false},
		textField{"merchant", req.Merchant, MaxIDLen, false},
		textField{"terminal", req.Terminal, MaxIDLen, false},
		textField{"currency", req.Currency, MaxIDLen, false},
		textField{"reason", req.Reason, MaxTokenLen, false},
		textField{"auth_code", req.AuthCode, MaxTokenLen, false},
		textField{"rrn", req.RRN, MaxTokenLen, false},
		textField{"bank_key", req.BankKey, MaxTokenLen, false},
	)
}
