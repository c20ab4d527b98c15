package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/citycard/citycard/schemas"
)

// TestGeneratedUpToDate runs the generator into a temporary directory and
// compares its output with codes.go, so an edit to errors.json without
// `go generate` fails here.
func TestGeneratedUpToDate(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to run the generator with")
	}
	out := filepath.Join(t.TempDir(), "codes.go")
	cmd := exec.Command(goTool, "run", "../../../schemas/internal/errorsgen",
		"-registry", "../../../schemas/errors.json", "-target", "fault", "-o", out)
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
		t.Error("codes.go is not what errorsgen writes from schemas/errors.json; run go generate ./hub/internal/fault")
	}
}

// TestTableMatchesRegistry checks the generated table against the registry
// as the schemas package reads it, entry by entry.
func TestTableMatchesRegistry(t *testing.T) {
	reg := schemas.Errors()
	if len(defs) != len(reg) {
		t.Errorf("%d codes in the table, %d in the registry", len(defs), len(reg))
	}
	for _, r := range reg {
		d, ok := defs[r.Code]
		want := def{status: r.HTTPStatus, iso8583: r.ISO8583, title: r.Title, decline: r.Kind == schemas.KindDecline, retryable: r.Retryable}
		if !ok || d != want {
			t.Errorf("%s: table has %+v (present %v), registry %+v", r.Code, d, ok, want)
		}
		if got := Retryable(r.Code); got != r.Retryable {
			t.Errorf("Retryable(%q) = %v, registry says %v", r.Code, got, r.Retryable)
		}
		if got := IsDecline(E(r.Code, "", "")); got != (r.Kind == schemas.KindDecline) {
			t.Errorf("IsDecline(%s) = %v", r.Code, got)
		}
	}
	for _, code := range []string{"", "made_up"} {
		if Retryable(code) {
			t.Errorf("Retryable(%q) = true for a code outside the registry", code)
		}
	}
}

func TestRetryable(t *testing.T) {
	for code, want := range map[string]bool{
		Unavailable: true, Timeout: true, InProgress: true, NotConfigured: true,
		Internal: false, InvalidRequest: false, Conflict: false, InsufficientFunds: false,
		BankUnavailable: false, Interrupted: false,
	} {
		if got := Retryable(code); got != want {
			t.Errorf("Retryable(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestErrorString(t *testing.T) {
	cause := errors.New("disk full")
	cases := []struct {
		err  *Error
		want string
	}{
		{E(InvalidAmount, "amount", "must be positive"), "invalid_amount: amount: must be positive"},
		{E(CardFrozen, "", ""), "card_frozen"},
		{Wrap(Internal, cause), "internal: disk full"},
		{&Error{Code: Conflict, Field: "card", Detail: "busy", Err: cause}, "conflict: card: busy: disk full"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if !errors.Is(Wrap(Internal, cause), cause) {
		t.Error("Wrap does not unwrap to its cause")
	}
	if Wrap(Internal, nil) == nil {
		t.Error("Wrap(nil) returned nil")
	}
}

func TestWithField(t *testing.T) {
	orig := E(LuhnFailed, "", "bad check digit")
	got := orig.WithField("card_number")
	if got.Field != "card_number" || got.Code != LuhnFailed || got.Detail != "bad check digit" {
		t.Errorf("got %+v", got)
	}
	if orig.Field != "" {
		t.Error("WithField changed the original")
	}
}

func TestCodeOfAndIs(t *testing.T) {
	inner := E(IdempotencyConflict, "", "")
	cases := []struct {
		name string
		err  error
		code string
		is   []string // codes Is must accept besides code
	}{
		{"nil", nil, "", nil},
		{"plain", errors.New("boom"), Internal, nil},
		{"fault", E(InsufficientFunds, "", ""), InsufficientFunds, nil},
		{"wrapped by fmt", fmt.Errorf("paying: %w", E(PINIncorrect, "", "")), PINIncorrect, nil},
		{"fault in fault", &Error{Code: Conflict, Err: inner}, Conflict, []string{IdempotencyConflict}},
		{"joined", errors.Join(errors.New("x"), E(HoldExpired, "", "")), HoldExpired, nil},
		{"joined deeper", fmt.Errorf("a: %w", errors.Join(E(Duplicate, "", ""), fmt.Errorf("b: %w", inner))), Duplicate, []string{IdempotencyConflict}},
		{"deadline", fmt.Errorf("db: %w", context.DeadlineExceeded), Timeout, nil},
		{"deadline inside fault", Wrap(Unavailable, context.DeadlineExceeded), Unavailable, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf = %q, want %q", got, tc.code)
			}
			accept := append([]string{tc.code}, tc.is...)
			for _, c := range []string{Internal, InsufficientFunds, IdempotencyConflict, Conflict, Timeout, Duplicate} {
				want := tc.err != nil && slices.Contains(accept, c)
				if got := Is(tc.err, c); got != want {
					t.Errorf("Is(%q) = %v, want %v", c, got, want)
				}
			}
		})
	}
}

func TestIsDecline(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{E(InsufficientFunds, "", ""), true},
		{E(CardLost, "", ""), true},
		{E(InvalidAmount, "", ""), false},
		{errors.New("x"), false},
		{nil, false},
	}
	for _, tc := range cases {
		if got := IsDecline(tc.err); got != tc.want {
			t.Errorf("IsDecline(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestProblem(t *testing.T) {
	schemaErr := schemas.Validate("channel-policy", []byte(`{"channel":"retail","accepts":["city_card"],"purses":["cash"],"purse_order":["cash"],"pin":{"required":"never"},"max_amount":1,"allow_negative":false,"currency":"CNY","colour":"red"}`))
	if schemaErr == nil {
		t.Fatal("document unexpectedly valid")
	}
	cases := []struct {
		name       string
		err        error
		want       ProblemDetails
		violations int
	}{
		{"bad input", E(InvalidAmount, "amount", "must be positive"), ProblemDetails{
			Type: TypeBase + "invalid_amount", Title: "The amount is not valid", Status: 400,
			Detail: "must be positive", Instance: "/v1/x", Code: "invalid_amount", Field: "amount", ISO8583: "13",
		}, 0},
		{"decline", fmt.Errorf("pay: %w", E(InsufficientFunds, "", "")), ProblemDetails{
			Type: TypeBase + "insufficient_funds", Title: "Insufficient funds", Status: 200,
			Instance: "/v1/x", Code: "insufficient_funds", ISO8583: "51",
		}, 0},
		{"plain error hides its text", errors.New("pq: password authentication failed"), ProblemDetails{
			Type: TypeBase + "internal", Title: "Internal error", Status: 500,
			Instance: "/v1/x", Code: "internal", ISO8583: "96",
		}, 0},
		{"wrapped cause hidden", Wrap(Unavailable, errors.New("dial tcp 10.0.0.1:5432")), ProblemDetails{
			Type: TypeBase + "unavailable", Title: "The service is unavailable; try again later", Status: 503,
			Instance: "/v1/x", Code: "unavailable", ISO8583: "91",
		}, 0},
		{"unregistered code", E("made_up", "f", "secret detail"), ProblemDetails{
			Type: TypeBase + "internal", Title: "Internal error", Status: 500,
			Instance: "/v1/x", Code: "internal", ISO8583: "96",
		}, 0},
		{"schema violation", FromSchema(schemaErr), ProblemDetails{
			Type: TypeBase + "unknown_field", Title: "The request has a field this API does not know", Status: 400,
			Detail: "unknown property", Instance: "/v1/x", Code: "unknown_field", Field: "/colour", ISO8583: "30",
		}, 1},
		{"violations not shown on internal", Wrap(Internal, schemaErr), ProblemDetails{
			Type: TypeBase + "internal", Title: "Internal error", Status: 500,
			Instance: "/v1/x", Code: "internal", ISO8583: "96",
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Problem(tc.err, "/v1/x")
			if len(got.Violations) != tc.violations {
				t.Errorf("violations = %+v, want %d", got.Violations, tc.violations)
			}
			got.Violations = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestProblemJSON(t *testing.T) {
	b, err := json.Marshal(Problem(E(PINLocked, "", ""), ""))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"code", "iso8583", "status", "title", "type"}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v (empty members omitted)", got, want)
	}
	if m["iso8583"] != "38" || m["status"] != float64(200) {
		t.Errorf("got %s", b)
	}
}

func TestFromSchema(t *testing.T) {
	missing := schemas.Validate("card-product", []byte(`{"code":"x1","name":"n","named":true,"currency":"CNY","deposit":-1,"max_balance":0,"purses":[{"name":"cash","refundable":true}]}`))
	cases := []struct {
		name  string
		err   error
		code  string
		field string
	}{
		{"nil", nil, "", ""},
		{"not json", schemas.Validate("card-product", []byte(`{`)), InvalidJSON, ""},
		{"violation", missing, InvalidRequest, "/deposit"},
		{"unknown schema", schemas.Validate("nope", []byte(`{}`)), Internal, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FromSchema(tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("got %v", got)
				}
				return
			}
			var e *Error
			if !errors.As(got, &e) {
				t.Fatalf("got %T", got)
			}
			if e.Code != tc.code || e.Field != tc.field {
				t.Errorf("got code %q field %q, want %q %q", e.Code, e.Field, tc.code, tc.field)
			}
			if !errors.Is(got, tc.err) && !errors.Is(got, schemas.ErrInvalidJSON) {
				t.Error("cause lost")
			}
		})
	}
}
