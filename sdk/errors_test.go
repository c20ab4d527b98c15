package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorCrossesTheWireIntact(t *testing.T) {
	orig := &Error{Code: "card_not_found", Message: "no card 886…", Field: "/payload/card", Retryable: true}
	// Wrapped on the way out, as a plugin might.
	got := fromWireError(toWireError(fmt.Errorf("charging: %w", orig)))
	var e *Error
	if !errors.As(got, &e) {
		t.Fatalf("got %T", got)
	}
	if e.Code != orig.Code || e.Message != orig.Message || e.Field != orig.Field || e.Retryable != orig.Retryable {
		t.Errorf("got %+v, want %+v", e, orig)
	}
	if !errors.Is(got, &Error{Code: "card_not_found"}) || errors.Is(got, &Error{Code: "card_lost"}) {
		t.Error("errors.Is does not match by code")
	}
	if fromWireError(nil) != nil || toWireError(nil) != nil {
		t.Error("nil does not stay nil")
	}
}

func TestAsError(t *testing.T) {
	cases := []struct {
		err       error
		code      string
		retryable bool
	}{
		{context.DeadlineExceeded, CodeTimeout, true},
		{fmt.Errorf("waiting: %w", context.Canceled), CodeUnavailable, true},
		{errors.New("boom"), CodeInternal, false},
		{Errorf("insufficient_funds", "balance %d", 5), "insufficient_funds", false},
	}
	for _, tc := range cases {
		e := AsError(tc.err)
		if e.Code != tc.code || e.Retryable != tc.retryable {
			t.Errorf("AsError(%v) = %+v, want %s retryable=%v", tc.err, e, tc.code, tc.retryable)
		}
		if !errors.Is(e, tc.err) && !errors.Is(tc.err, e) {
			t.Errorf("AsError(%v) lost its cause", tc.err)
		}
	}
	if AsError(nil) != nil {
		t.Error("AsError(nil) != nil")
	}
}

func TestTransportError(t *testing.T) {
	cases := []struct {
		code      codes.Code
		want      string
		retryable bool
	}{
		{codes.Unavailable, CodeUnavailable, true},
		{codes.DeadlineExceeded, CodeTimeout, true},
		{codes.Canceled, CodeUnavailable, true},
		{codes.Unimplemented, CodeInternal, false},
		{codes.ResourceExhausted, CodeInternal, false},
	}
	for _, tc := range cases {
		e := transportError(context.Background(), "handle", status.Error(tc.code, "x"))
		if e.Code != tc.want || e.Retryable != tc.retryable {
			t.Errorf("%v: got %+v", tc.code, e)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e := transportError(ctx, "handle", status.Error(codes.Canceled, "x")); !errors.Is(e, context.Canceled) && e.Code != CodeUnavailable {
		t.Errorf("cancelled: %+v", e)
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Code: "schema_invalid", Message: "bad", Field: "/payload/card"}
	if got, want := e.Error(), "schema_invalid: bad (at /payload/card)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if wireError(nil) != nil {
		t.Error("wireError(nil)")
	}
	if e := fromWireError(toWireError(&Error{Message: "no code"})); !errors.Is(e, &Error{Code: CodeInternal}) {
		t.Errorf("an error without a code became %v", e)
	}
}
