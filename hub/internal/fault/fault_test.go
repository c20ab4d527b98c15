package fault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/citycard/citycard/schemas"
)

// constants reads the string constants declared in codes.go, so a code added
// to one side only fails here.
func constants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[name.Name] = v
			}
		}
	}
	return out
}

// goName is the constant name a code should have: snake_case to CamelCase
// with Go's initialisms.
func goName(code string) string {
	var b strings.Builder
	for _, p := range strings.Split(code, "_") {
		switch p {
		case "pin", "json", "id", "iso":
			b.WriteString(strings.ToUpper(p))
		default:
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

func TestConstantsMatchRegistry(t *testing.T) {
	consts := constants(t)
	registry := map[string]bool{}
	for _, d := range schemas.Errors() {
		registry[d.Code] = true
	}
	byValue := map[string]string{}
	for name, code := range consts {
		if other, dup := byValue[code]; dup {
			t.Errorf("%s and %s are both %q", name, other, code)
		}
		byValue[code] = name
		if !registry[code] {
			t.Errorf("%s = %q is not in schemas/errors.json", name, code)
		}
		if want := goName(code); name != want {
			t.Errorf("constant for %q is %s, want %s", code, name, want)
		}
	}
	for _, code := range slices.Sorted(maps.Keys(registry)) {
		if _, ok := byValue[code]; !ok {
			t.Errorf("registry code %q has no constant (want %s = %q)", code, goName(code), code)
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
