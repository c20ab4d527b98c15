package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/citycard/citycard/schemas"
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

// TestCodesUpToDate runs the generator into a temporary directory and
// compares its output with codes.go, so an edit to the registry without
// `go generate` fails here.
func TestCodesUpToDate(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to run the generator with")
	}
	out := filepath.Join(t.TempDir(), "codes.go")
	cmd := exec.Command(goTool, "run", "../schemas/internal/errorsgen",
		"-registry", "../schemas/errors.json", "-target", "sdk", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("errorsgen: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("codes.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("codes.go is not what errorsgen writes from schemas/errors.json; run go generate ./sdk")
	}
}

func TestIsRetryable(t *testing.T) {
	// Every registry code, bare and wrapped, is decided by the registry
	// whatever the flag the sender set.
	for _, d := range schemas.Errors() {
		for _, flag := range []bool{false, true} {
			err := fmt.Errorf("calling the hub: %w", &Error{Code: d.Code, Retryable: flag})
			if got := IsRetryable(err); got != d.Retryable {
				t.Errorf("IsRetryable(%s, flag %v) = %v, registry says %v", d.Code, flag, got, d.Retryable)
			}
		}
		if got := Errorf(d.Code, "x").Retryable; got != d.Retryable {
			t.Errorf("Errorf(%s).Retryable = %v, registry says %v", d.Code, got, d.Retryable)
		}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", context.DeadlineExceeded, true},
		{"cancelled", context.Canceled, true},
		{"plain", errors.New("boom"), false},
		{"plugin's own code, retryable", &Error{Code: "meter_busy", Retryable: true}, true},
		{"plugin's own code, final", &Error{Code: "meter_jammed"}, false},
	}
	for _, tc := range cases {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLegacyCodeNames keeps the names plugins wrote before the registry
// was generated.
func TestLegacyCodeNames(t *testing.T) {
	for name, pair := range map[string][2]string{
		"CodeSchemaInvalid":      {CodeSchemaInvalid, "schema_invalid"},
		"CodeConfigInvalid":      {CodeConfigInvalid, "config_invalid"},
		"CodeDescriptorInvalid":  {CodeDescriptorInvalid, "descriptor_invalid"},
		"CodeUnsupportedMessage": {CodeUnsupportedMessage, "unsupported_message_type"},
		"CodeNotConfigured":      {CodeNotConfigured, "not_configured"},
		"CodeInvalidRequest":     {CodeInvalidRequest, "invalid_request"},
		"CodeInternal":           {CodeInternal, "internal"},
		"CodeUnavailable":        {CodeUnavailable, "unavailable"},
		"CodeTimeout":            {CodeTimeout, "timeout"},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s = %q, want %q", name, pair[0], pair[1])
		}
	}
}
