package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failure with a stable code, as it crosses the wire between hub
// and plugin: a plugin returns one from Handle or Configure, the hub returns
// one from Submit, and each side gets it back intact, so errors.As works on
// both sides of the process boundary.
type Error struct {
	// Code is a stable snake_case code from the hub's error registry
	// (schemas/errors.json) or one of the Code constants of this package.
	Code string
	// Message explains the failure to a person, in English.
	Message string
	// Field is a JSON pointer to the offending value, when there is one,
	// e.g. "/payload/card" or, in a configuration, "/rate_per_hour".
	Field string
	// Retryable says whether the same request may succeed later.
	Retryable bool

	// cause is the local error this one was made from; it never crosses the
	// wire, but lets errors.Is(err, context.DeadlineExceeded) work locally.
	cause error
}

// codes.go holds every code of the hub's registry as a constant, written
// from schemas/errors.json so partners never copy codes by hand.
//go:generate go run ../schemas/internal/errorsgen -registry ../schemas/errors.json -target sdk -o codes.go

// CodeUnsupportedMessage is the code for a type Handle does not handle.
//
// Deprecated: use CodeUnsupportedMessageType, the registry's name for it.
const CodeUnsupportedMessage = CodeUnsupportedMessageType

// IsRetryable reports whether the request that failed with err may succeed
// if sent again as it was. The hub's error registry decides by the code of
// AsError(err), so hub and plugins agree on every registry code; only a code
// outside the registry (a plugin's own) falls back to the error's Retryable
// flag. IsRetryable(nil) is false.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	e := AsError(err)
	if r, known := codeRetryable[e.Code]; known {
		return r
	}
	return e.Retryable
}

// Error formats the error as "code: message" with the field when known.
func (e *Error) Error() string {
	s := e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Field != "" {
		s += " (at " + e.Field + ")"
	}
	return s
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same Code, so tests can
// write errors.Is(err, &sdk.Error{Code: sdk.CodeSchemaInvalid}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// Errorf returns an *Error with code and a formatted message, retryable
// when the registry says code is.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: codeRetryable[code]}
}

// AsError turns any error into an *Error fit to cross the wire: an *Error
// anywhere in the chain is returned as it is; a passed deadline becomes a
// retryable CodeTimeout, a cancellation a retryable CodeUnavailable, and
// anything else CodeInternal. It returns nil for nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeTimeout, Message: err.Error(), Retryable: true, cause: err}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeUnavailable, Message: err.Error(), Retryable: true, cause: err}
	}
	return &Error{Code: CodeInternal, Message: err.Error(), cause: err}
}

// transportError turns a failed gRPC call into an *Error. The call never got
// an in-band answer, so the peer either timed out or is gone: both are
// retryable, which is what lets the hub retry a request to a plugin that
// crashed once it has been restarted.
func transportError(ctx context.Context, op string, err error) *Error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		e := AsError(ctxErr)
		return &Error{Code: e.Code, Message: op + ": " + e.Message, Retryable: true, cause: err}
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.DeadlineExceeded:
		return &Error{Code: CodeTimeout, Message: op + ": " + st.Message(), Retryable: true, cause: err}
	case codes.Unavailable, codes.Canceled, codes.Aborted:
		return &Error{Code: CodeUnavailable, Message: op + ": " + st.Message(), Retryable: true, cause: err}
	}
	// Unimplemented, Internal, Unknown: the peer is there but broken or
	// speaks another protocol; a retry will not help.
	return &Error{Code: CodeInternal, Message: op + ": " + st.Code().String() + ": " + st.Message(), cause: err}
}
