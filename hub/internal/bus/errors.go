package bus

import (
	"errors"
	"fmt"

	"github.com/citycard/citycard/hub/internal/fault"
)

// Errors reported by the router.
var (
	// ErrClosed is returned once the router is closed. A Publish that
	// returns it may or may not have been handled: publish again with the
	// same idempotency key.
	ErrClosed = errors.New("bus: router closed")
	// ErrStarted is returned by Handle after Start.
	ErrStarted = errors.New("bus: router already started")
	// ErrNotStarted is returned by an in-process (gochannel) Publish before
	// Start: nothing is subscribed yet, so the message would be lost.
	ErrNotStarted = errors.New("bus: router not started")
	// ErrNoHandler is returned by an in-process (gochannel) Publish to a
	// topic no handler subscribes to: the message would be dropped.
	ErrNoHandler = errors.New("bus: no handler for topic")
	// ErrHandlerTimeout is wrapped by the error of an attempt that ran past
	// Config.HandlerTimeout. It is retryable.
	ErrHandlerTimeout = errors.New("bus: handler timed out")
	// ErrDeadLetterNotFound is returned for an unknown dead letter ID.
	ErrDeadLetterNotFound = errors.New("bus: dead letter not found")
	// ErrAlreadyReplayed is returned by Replay for a dead letter replayed
	// before: its replay already runs or ran, and if that failed too it is a
	// new dead letter of its own.
	ErrAlreadyReplayed = errors.New("bus: dead letter already replayed")
)

// retryableError marks its cause as worth another attempt.
type retryableError struct{ err error }

func (e *retryableError) Error() string   { return e.err.Error() }
func (e *retryableError) Unwrap() error   { return e.err }
func (e *retryableError) Retryable() bool { return true }

// Retryable marks err as transient (a partner host down, a lock timeout, a
// plugin restarting): the router retries it with backoff before giving up
// on the message. Errors not marked go to the dead letters at once, since
// running a handler again on bad input only fails again. Retryable(nil) is
// nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

// IsRetryable reports whether any error in err's chain is retryable: a
// *fault.Error whose code the error registry marks retryable (fault.Retryable,
// the one table every part of the hub decides by), or an error with a method
// Retryable() bool that returns true: those made by Retryable, timeouts of
// the bus, and errors of other packages that say so themselves without
// importing this one.
func IsRetryable(err error) bool {
	for err != nil {
		if r, ok := err.(interface{ Retryable() bool }); ok && r.Retryable() {
			return true
		}
		if f, ok := err.(*fault.Error); ok && fault.Retryable(f.Code) {
			return true
		}
		switch e := err.(type) {
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if IsRetryable(inner) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// PanicError is the error a handler's panic becomes. A panic is a bug, not
// a transient failure, so it is not retried.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the goroutine's stack at the panic, for the log.
	Stack []byte
}

// Error names the panic value; the stack goes to the log, not the reason.
func (p *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", p.Value) }

// storeError marks a failure of the idempotency store rather than of the
// handler: the message is left for redelivery, not dead-lettered, since it
// was never tried.
type storeError struct{ err error }

func (e *storeError) Error() string { return "idempotency store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }
