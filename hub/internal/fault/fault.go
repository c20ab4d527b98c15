// Package fault is the hub's error type. Every failure the hub reports
// carries a stable code from the registry in schemas/errors.json, which maps
// it to an HTTP status and an ISO 8583 response code; Problem turns any error
// into RFC 9457 problem details.
package fault

// codes.go is written from the registry, so the two cannot drift.
//go:generate go run ../../../schemas/internal/errorsgen -registry ../../../schemas/errors.json -target fault -o codes.go

import (
	"context"
	"errors"
	"strings"

	"github.com/citycard/citycard/schemas"
)

// Error is a failure with a registry code.
type Error struct {
	// Code is a registry code, one of the constants of this package.
	Code string
	// Field names the input at fault, as the API spells it ("amount") or
	// as a JSON pointer ("/purses/0/name"); empty when no one input is.
	Field string
	// Detail explains this occurrence; it is shown to the client, so it
	// must not leak internals.
	Detail string
	// Err is the cause, for logs; it is never shown to the client.
	Err error
}

// E returns an error with the given code, field and detail.
func E(code, field, detail string) *Error {
	return &Error{Code: code, Field: field, Detail: detail}
}

// Wrap returns an error with the given code whose cause is err. It never
// returns nil, so `return fault.Wrap(c, err)` is only right when err != nil.
func Wrap(code string, err error) *Error {
	return &Error{Code: code, Err: err}
}

// Error formats as "code: field: detail: cause", leaving out empty parts.
func (e *Error) Error() string {
	parts := []string{e.Code}
	if e.Field != "" {
		parts = append(parts, e.Field)
	}
	if e.Detail != "" {
		parts = append(parts, e.Detail)
	}
	if e.Err != nil {
		parts = append(parts, e.Err.Error())
	}
	return strings.Join(parts, ": ")
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// WithField returns a copy of e naming field as the input at fault, for
// callers that know the request's field name when the callee did not.
func (e *Error) WithField(field string) *Error {
	c := *e
	c.Field = field
	return &c
}

// CodeOf returns the code of the first *Error in err's chain. Without one it
// returns Timeout for a context deadline, Internal for any other error, and
// "" for nil.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Internal
}

// Is reports whether err has code: either CodeOf(err) is code or some *Error
// deeper in the chain carries it (a conflict wrapping an idempotency_conflict
// is both).
func Is(err error, code string) bool {
	if err == nil {
		return false
	}
	if CodeOf(err) == code {
		return true
	}
	return hasCode(err, code)
}

func hasCode(err error, code string) bool {
	for err != nil {
		if e, ok := err.(*Error); ok && e.Code == code {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if hasCode(inner, code) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return false
		}
	}
	return false
}

// IsDecline reports whether err's code is a decline (an answer sent with
// HTTP 200 and its ISO 8583 code) rather than an error.
func IsDecline(err error) bool {
	return defs[CodeOf(err)].decline
}

// Retryable reports whether a request that failed with code may succeed if
// sent again as it was, as the registry says. Every other place that decides
// retryability (the router, the ledger, the plugin protocol) asks this table,
// so a code cannot be transient in one and final in another. An unknown code
// is not retryable.
func Retryable(code string) bool {
	return defs[code].retryable
}

// FromSchema converts the result of schemas.Validate into an *Error:
// invalid_json for malformed JSON, unknown_field when the first violation is
// an unknown property, invalid_request for any other violation (Field is the
// first violation's JSON pointer), internal otherwise. It returns nil for nil.
func FromSchema(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, schemas.ErrInvalidJSON) {
		return &Error{Code: InvalidJSON, Detail: "the body is not valid JSON", Err: err}
	}
	var ve *schemas.ValidationError
	if !errors.As(err, &ve) || len(ve.Violations) == 0 {
		return Wrap(Internal, err)
	}
	v := ve.Violations[0]
	code := InvalidRequest
	if v.Keyword == "unevaluatedProperties" || v.Keyword == "additionalProperties" {
		code = UnknownField
	}
	return &Error{Code: code, Field: v.InstancePath, Detail: v.Message, Err: err}
}
