package fault

import (
	"errors"

	"github.com/citycard/citycard/schemas"
)

// TypeBase prefixes a code to form a problem's type URI.
const TypeBase = "https://citycard.example/problems/"

// ProblemDetails is an RFC 9457 problem document with the hub's extension
// members: code, field, iso8583 and, for schema failures, every violation.
type ProblemDetails struct {
	Type       string              `json:"type"`
	Title      string              `json:"title"`
	Status     int                 `json:"status"`
	Detail     string              `json:"detail,omitempty"`
	Instance   string              `json:"instance,omitempty"`
	Code       string              `json:"code"`
	Field      string              `json:"field,omitempty"`
	ISO8583    string              `json:"iso8583"`
	Violations []schemas.Violation `json:"violations,omitempty"`
}

// ContentType is the media type of a serialised ProblemDetails.
const ContentType = "application/problem+json"

// Problem describes err for a client. Title, status and ISO 8583 code come
// from the registry; detail and field come only from an *Error, so causes
// such as database errors never reach the client. An error without a
// registry code, or with a code missing from the registry, is reported as
// internal. instance is the URI of the request, and may be empty.
func Problem(err error, instance string) ProblemDetails {
	code := CodeOf(err)
	d, known := defs[code]
	if !known {
		code = Internal
		d = defs[Internal]
	}
	p := ProblemDetails{
		Type:     TypeBase + code,
		Title:    d.title,
		Status:   d.status,
		Instance: instance,
		Code:     code,
		ISO8583:  d.iso8583,
	}
	var e *Error
	if known && errors.As(err, &e) {
		p.Detail = e.Detail
		p.Field = e.Field
	}
	// Violations describe the client's own document; only show them when
	// the client is being told its request was bad.
	var ve *schemas.ValidationError
	if known && d.status == 400 && errors.As(err, &ve) {
		p.Violations = ve.Violations
	}
	return p
}
