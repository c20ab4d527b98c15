package pin

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/citycard/citycard/hub/internal/fault"
)

// cheap keeps the suite fast; TestDefaultCost covers the real parameters.
func cheap(t *testing.T) {
	t.Helper()
	t.Cleanup(SetCostForTesting(1, 64))
}

func TestValidFormat(t *testing.T) {
	cases := []struct {
		pin string
		ok  bool
	}{
		{"123456", true},
		{"000000", true},
		{"999999", true},
		{"", false},
		{"12345", false},
		{"1234567", false},
		{"12345a", false},
		{" 12345", false},
		{"12 456", false},
		{"-12345", false},
		{"１２３４５６", false}, // full-width digits
		{"١٢٣٤٥٦", false}, // Arabic-Indic digits
	}
	for _, tc := range cases {
		err := ValidFormat(tc.pin)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidFormat(%q) = %v", tc.pin, err)
			}
			continue
		}
		if fault.CodeOf(err) != fault.PINInvalidFormat || !errors.Is(err, ErrFormat) {
			t.Errorf("ValidFormat(%q) = %v, want pin_invalid_format wrapping ErrFormat", tc.pin, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	cheap(t)
	cases := []struct {
		stored, tried string
		want          bool
	}{
		{"123456", "123456", true},
		{"000000", "000000", true},
		{"123456", "123457", false},
		{"123456", "654321", false},
		{"000000", "000001", false},
	}
	for _, tc := range cases {
		h, err := Hash(tc.stored)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Verify(h, tc.tried)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if got != tc.want {
			t.Errorf("stored %s, tried %s: got %v, want %v", tc.stored, tc.tried, got, tc.want)
		}
	}
}

func TestSaltedHashesDiffer(t *testing.T) {
	cheap(t)
	a, _ := Hash("123456")
	b, _ := Hash("123456")
	if a == b {
		t.Error("two hashes of one PIN are identical; salt not random")
	}
}

func TestDefaultCost(t *testing.T) {
	h, err := Hash("246810")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q does not record the default cost", h)
	}
	parts := strings.Split(h, "$")
	if salt, _ := b64.DecodeString(parts[4]); len(salt) != 16 {
		t.Errorf("salt is %d bytes", len(salt))
	}
	if key, _ := b64.DecodeString(parts[5]); len(key) != 32 {
		t.Errorf("key is %d bytes", len(key))
	}
}

func TestVerifyUsesEncodedCost(t *testing.T) {
	restore := SetCostForTesting(1, 64)
	h, err := Hash("135790")
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h, "$m=64,t=1,p=1$") {
		t.Fatalf("hash %q does not record the test cost", h)
	}
	t.Cleanup(SetCostForTesting(3, 128)) // a different current cost must not matter
	if ok, err := Verify(h, "135790"); !ok || err != nil {
		t.Errorf("Verify = %v, %v; want true", ok, err)
	}
}

// The argon2-cffi documentation's example hash of "correct horse battery
// staple", made by the reference C implementation, proves the PHC parsing
// and the key derivation interoperate.
func TestReferenceVector(t *testing.T) {
	const ref = "$argon2id$v=19$m=65536,t=3,p=4$MIIRqgvgQbgj220jfp0MPA$YfwJSVjtjSU0zzV/P3S9nnQ/USre2wvJMjfCIjrTQbg"
	h, err := parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if !h.matches([]byte("correct horse battery staple")) {
		t.Error("reference hash does not verify")
	}
	if h.matches([]byte("Tr0ub4dor&3")) {
		t.Error("reference hash verifies a wrong password")
	}
}

func TestTampered(t *testing.T) {
	cheap(t)
	h, err := Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$") // "", argon2id, v=19, m=..,t=..,p=.., salt, hash
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	flip := func(s string) string {
		c := byte('A')
		if s[0] == 'A' {
			c = 'B'
		}
		return string(c) + s[1:]
	}
	cases := []struct {
		name      string
		encoded   string
		malformed bool // else: reads fine, must not match
	}{
		{"hash changed", with(5, flip(parts[5])), false},
		{"salt changed", with(4, flip(parts[4])), false},
		{"cost changed", with(3, "m=64,t=2,p=1"), false},
		{"truncated hash", with(5, parts[5][:10]), true},
		{"bad base64", with(5, "!!"+parts[5][2:]), true},
		{"padded base64", with(5, parts[5]+"="), true},
		{"argon2i", with(1, "argon2i"), true},
		{"version 16", with(2, "v=16"), true},
		{"params reordered", with(3, "t=1,m=64,p=1"), true},
		{"params missing", with(3, "m=64,t=1"), true},
		{"memory too large", with(3, "m=4194304,t=1,p=1"), true},
		{"too many passes", with(3, "m=64,t=1000,p=1"), true},
		{"zero threads", with(3, "m=64,t=1,p=0"), true},
		{"negative", with(3, "m=-64,t=1,p=1"), true},
		{"empty", "", true},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", true},
		{"extra field", h + "$x", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := Verify(tc.encoded, "123456")
			if ok {
				t.Fatal("tampered hash verified")
			}
			if tc.malformed != errors.Is(err, ErrMalformedHash) {
				t.Errorf("err = %v, want malformed %v", err, tc.malformed)
			}
		})
	}
}

func TestFormatErrors(t *testing.T) {
	cheap(t)
	h, err := Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, err := Hash(bad); fault.CodeOf(err) != fault.PINInvalidFormat {
			t.Errorf("Hash(%q) err = %v", bad, err)
		}
		ok, err := Verify(h, bad)
		if ok || fault.CodeOf(err) != fault.PINInvalidFormat {
			t.Errorf("Verify(%q) = %v, %v", bad, ok, err)
		}
	}
}

func TestConcurrent(t *testing.T) {
	cheap(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := strings.Repeat(string(rune('0'+i)), Length)
			h, err := Hash(p)
			if err != nil {
				t.Error(err)
				return
			}
			if ok, err := Verify(h, p); !ok || err != nil {
				t.Errorf("Verify(%s) = %v, %v", p, ok, err)
			}
		}()
	}
	wg.Wait()
}

func TestSetCostForTestingRejectsZero(t *testing.T) {
	cases := []struct{ t, m uint32 }{{0, 64}, {1, 4}}
	for _, tc := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetCostForTesting(%d, %d) did not panic", tc.t, tc.m)
				}
			}()
			SetCostForTesting(tc.t, tc.m)
		}()
	}
}
