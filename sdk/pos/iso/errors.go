package iso

import (
	"errors"
	"fmt"
)

// Kinds of decode and MAC failure; match them with errors.Is.
var (
	// ErrFrameLength: the 2-byte length does not match the bytes that follow,
	// or is zero, or a message is too long for it.
	ErrFrameLength = errors.New("frame length mismatch")
	// ErrTruncated: the data ends before the TPDU, header or MTI is complete.
	ErrTruncated = errors.New("truncated message")
	// ErrTPDU: the TPDU does not start with ID 0x60.
	ErrTPDU = errors.New("bad TPDU")
	// ErrHeader: the 6-byte header is not of the expected form.
	ErrHeader = errors.New("bad header")
	// ErrMTI: the MTI is not four BCD digits.
	ErrMTI = errors.New("bad MTI")
	// ErrBitmap: the bitmap is short or names a field the spec does not define.
	ErrBitmap = errors.New("bad bitmap")
	// ErrField: a field is truncated, too long, or not of its type.
	ErrField = errors.New("bad field")
	// ErrNonCanonical: bytes follow the last field, or the message does not
	// re-encode to the bytes received (pad digits, an empty secondary
	// bitmap): accepting it would let a MAC cover something else.
	ErrNonCanonical = errors.New("non-canonical encoding")
	// ErrMACMissing: a message that must carry a MAC has none.
	ErrMACMissing = errors.New("MAC missing")
	// ErrMACMismatch: the MAC does not verify (response code A0).
	ErrMACMismatch = errors.New("MAC mismatch")
	// ErrInvalidValue: a builder was given a value it cannot encode.
	ErrInvalidValue = errors.New("invalid value")
)

// DecodeError reports where a message failed to decode. Field is -1 for
// the frame, 0 for the TPDU, header and MTI, 1 for the bitmap. Detail never
// holds the content of a sensitive field.
type DecodeError struct {
	Field  int
	Kind   error
	Detail string
}

func (e *DecodeError) Error() string {
	where := "frame"
	switch {
	case e.Field == 0:
		where = "envelope/MTI"
	case e.Field == 1:
		where = "bitmap"
	case e.Field > 1:
		where = fmt.Sprintf("field %d", e.Field)
	}
	s := "iso: decode " + where + ": " + e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the kind.
func (e *DecodeError) Unwrap() error { return e.Kind }

// MACError reports a MAC that is missing or does not verify.
type MACError struct {
	Kind error // ErrMACMissing or ErrMACMismatch
	MTI  string
}

func (e *MACError) Error() string { return "iso: " + e.MTI + ": " + e.Kind.Error() }

// Unwrap returns the kind.
func (e *MACError) Unwrap() error { return e.Kind }

// Response codes this layer's errors map to.
const (
	ResponseApproved    = "00"
	ResponseFormatError = "30" // message format error
	ResponseMACError    = "A0" // MAC check failed
	ResponseSystemError = "96"
)

// ResponseCode maps an error from this package to the ISO 8583 response
// code to answer with: A0 for MAC failures, 30 for undecodable messages,
// 96 for anything else, 00 for nil.
func ResponseCode(err error) string {
	switch {
	case err == nil:
		return ResponseApproved
	case errors.Is(err, ErrMACMismatch), errors.Is(err, ErrMACMissing):
		return ResponseMACError
	case errors.As(err, new(*DecodeError)):
		return ResponseFormatError
	default:
		return ResponseSystemError
	}
}

// sensitiveFields never have their content, nor library text about it, in
// an error: card number, expiry, track data, batch upload entries (which
// hold card numbers), PIN block, chip data, keys.
var sensitiveFields = map[int]bool{2: true, 14: true, 35: true, 36: true, 45: true, 48: true, 52: true, 55: true, 62: true}
