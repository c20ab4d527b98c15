package cardno

import (
	"errors"
	"testing"

	"github.com/citycard/citycard/hub/internal/fault"
)

func TestLuhn(t *testing.T) {
	cases := []struct {
		number string
		want   bool
	}{
		{"79927398713", true}, // the textbook example
		{"79927398710", false},
		{"79927398711", false},
		{"4111111111111111", true}, // Visa test card
		{"4111111111111112", false},
		{"5555555555554444", true}, // Mastercard test card
		{"378282246310005", true},  // Amex test card
		{"6011111111111117", true}, // Discover test card
		{"6200000000000005", true}, // UnionPay test card
		{"4012888888881881", true},
		{"0000000000000000", true},
		{"00", true},
		{"18", true},
		{"10", false},
		{"0", false}, // no payload
		{"", false},
		{"4111 1111 1111 1111", false},
		{"4111-1111-1111-1111", false},
		{"411111111111111a", false},
		{"４111111111111111", false}, // full-width digit
	}
	for _, tc := range cases {
		if got := Luhn(tc.number); got != tc.want {
			t.Errorf("Luhn(%q) = %v, want %v", tc.number, got, tc.want)
		}
	}
}

func TestCheckDigit(t *testing.T) {
	cases := []struct {
		partial string
		want    byte
	}{
		{"7992739871", '3'},
		{"411111111111111", '1'},
		{"555555555555444", '4'},
		{"0", '0'},
		{"1", '8'},
		{"", 0},
		{"12a", 0},
	}
	for _, tc := range cases {
		got := CheckDigit(tc.partial)
		if got != tc.want {
			t.Errorf("CheckDigit(%q) = %q, want %q", tc.partial, got, tc.want)
		}
		if got != 0 && !Luhn(tc.partial+string(got)) {
			t.Errorf("%s%c fails Luhn", tc.partial, got)
		}
	}
}

func TestNew(t *testing.T) {
	cases := []struct {
		prefix  string
		serial  int64
		want    string
		wantErr bool
	}{
		{DefaultPrefix, 1, "3100990000000013", false},
		{DefaultPrefix, 0, "3100990000000005", false},
		{DefaultPrefix, 123456789, "3100991234567892", false},
		{DefaultPrefix, 999999999, "3100999999999994", false},
		{DefaultPrefix, 1000000000, "", true}, // only nine digits follow a six-digit prefix
		{"31009912", 1234567, "3100991212345675", false},
		{"31009912", 10000000, "", true},
		{DefaultPrefix, -1, "", true},
		{"31009", 1, "", true},
		{"310099123", 1, "", true},
		{"31009x", 1, "", true},
		{"", 1, "", true},
	}
	for _, tc := range cases {
		got, err := New(tc.prefix, tc.serial)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q, %d) error = %v, want error %v", tc.prefix, tc.serial, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("New(%q, %d) = %q, want %q", tc.prefix, tc.serial, got, tc.want)
		}
		if err == nil {
			if len(got) != Length || Valid(got) != nil || !HasPrefix(got, tc.prefix) {
				t.Errorf("New(%q, %d) = %q is not a valid 16-digit number under its prefix", tc.prefix, tc.serial, got)
			}
		}
	}
}

func TestNewDistinct(t *testing.T) {
	seen := map[string]bool{}
	for serial := range int64(2000) {
		n, err := New(DefaultPrefix, serial)
		if err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("serial %d repeats %s", serial, n)
		}
		seen[n] = true
	}
}

func TestValid(t *testing.T) {
	cases := []struct {
		number string
		code   string // "" = valid
		cause  error
	}{
		{"3100990000000013", "", nil},
		{"4111111111111111", "", nil},
		{"6212345678901232", "", nil},
		{"6212345678901234569", "", nil}, // 19 digits
		{"3100990000000014", fault.LuhnFailed, ErrCheckDigit},
		{"4111111111111112", fault.LuhnFailed, ErrCheckDigit},
		{"79927398713", fault.InvalidRequest, ErrFormat},          // Luhn-valid but too short
		{"62123456789012345670", fault.InvalidRequest, ErrFormat}, // 20 digits
		{"4111 1111 1111 1111", fault.InvalidRequest, ErrFormat},
		{"", fault.InvalidRequest, ErrFormat},
	}
	for _, tc := range cases {
		err := Valid(tc.number)
		if tc.code == "" {
			if err != nil {
				t.Errorf("Valid(%q) = %v", tc.number, err)
			}
			continue
		}
		if got := fault.CodeOf(err); got != tc.code {
			t.Errorf("Valid(%q) code = %q, want %q", tc.number, got, tc.code)
		}
		if !errors.Is(err, tc.cause) {
			t.Errorf("Valid(%q) = %v, want cause %v", tc.number, err, tc.cause)
		}
	}
}

func TestHasPrefix(t *testing.T) {
	cases := []struct {
		number, prefix string
		want           bool
	}{
		{"3100990000000013", DefaultPrefix, true},
		{"4111111111111111", DefaultPrefix, false},
		{"3100990000000013", "", false},
		{"3100990000000013", "31009x", false},
		{"31009", DefaultPrefix, false},
	}
	for _, tc := range cases {
		if got := HasPrefix(tc.number, tc.prefix); got != tc.want {
			t.Errorf("HasPrefix(%q, %q) = %v, want %v", tc.number, tc.prefix, got, tc.want)
		}
	}
}
