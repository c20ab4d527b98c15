package cardcrypto

import "errors"

// Kinds of failure. Every error returned by this package wraps one of them,
// so callers match with errors.Is and map them to response codes.
var (
	// ErrInvalidPAN: not 12 to 19 decimal digits.
	ErrInvalidPAN = errors.New("invalid card number")
	// ErrLuhn: the card number's check digit is wrong.
	ErrLuhn = errors.New("card number check digit is wrong")
	// ErrInvalidTrack2: track 2 equivalent data cannot be parsed.
	ErrInvalidTrack2 = errors.New("invalid track 2 data")
	// ErrInvalidExpiry: an expiry date that is not YYMM.
	ErrInvalidExpiry = errors.New("invalid expiry date")
	// ErrExpired: the card is past its expiry month.
	ErrExpired = errors.New("card expired")
	// ErrInvalidServiceCode: a service code that is not three digits.
	ErrInvalidServiceCode = errors.New("invalid service code")
	// ErrInvalidPIN: a PIN that is not 4 to 12 decimal digits.
	ErrInvalidPIN = errors.New("invalid PIN")
	// ErrInvalidPINBlock: a PIN block that does not decode as ISO 9564 format 0.
	ErrInvalidPINBlock = errors.New("invalid PIN block")
	// ErrInvalidKey: a key of the wrong length for the operation.
	ErrInvalidKey = errors.New("invalid key")
	// ErrKeyCheck: a key's check value does not match the one supplied with it.
	ErrKeyCheck = errors.New("key check value mismatch")
	// ErrInvalidData: input of the wrong length or form for the operation.
	ErrInvalidData = errors.New("invalid data")
	// ErrTopKeyMissing: no top key was supplied to the key store.
	ErrTopKeyMissing = errors.New("key store top key is missing")
	// ErrTopKeyInvalid: the supplied top key is not 32 bytes in hex or base64.
	ErrTopKeyInvalid = errors.New("key store top key is malformed")
	// ErrKeyStoreOpen: a sealed key cannot be opened: wrong top key, wrong
	// name, or the blob was altered.
	ErrKeyStoreOpen = errors.New("sealed key cannot be opened (wrong top key or altered data)")
)

// Error carries the operation that failed and the kind of failure. Detail
// never contains a secret (no key, PIN or full card number).
type Error struct {
	Op     string // e.g. "ParseTrack2"
	Kind   error  // one of the Err* values above
	Detail string // a safe explanation, may be empty
}

func (e *Error) Error() string {
	s := "cardcrypto: " + e.Op + ": " + e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the kind, so errors.Is(err, ErrExpired) works.
func (e *Error) Unwrap() error { return e.Kind }

func newErr(op string, kind error, detail string) error {
	return &Error{Op: op, Kind: kind, Detail: detail}
}

// Kinds of verification failure.
var (
	// ErrCVVMismatch: a CVV, CVV2 or iCVV does not verify.
	ErrCVVMismatch = errors.New("card verification value mismatch")
	// ErrMACMismatch: a message authentication code does not verify.
	ErrMACMismatch = errors.New("MAC mismatch")
)
