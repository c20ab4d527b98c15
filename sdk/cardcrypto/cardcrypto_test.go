package cardcrypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testPAN = "6222021234567890128" // 19 digits, Luhn valid

func mustPAN(t *testing.T, s string) PAN {
	t.Helper()
	p, err := ParsePAN(s)
	if err != nil {
		t.Fatalf("ParsePAN: %v", err)
	}
	return p
}

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"79927398713", true}, // the textbook example
		{"79927398710", false},
		{"4111111111111111", true},
		{"4111111111111112", false},
		{testPAN, true},
		{"", false},
		{"0", false},
		{"41111111111111a1", false},
	} {
		if got := LuhnValid(tc.in); got != tc.want {
			t.Errorf("LuhnValid(%q) = %v", tc.in, got)
		}
	}
	d, err := LuhnCheckDigit("7992739871")
	if err != nil || d != '3' {
		t.Errorf("LuhnCheckDigit = %c, %v", d, err)
	}
	if _, err := LuhnCheckDigit("12x"); !errors.Is(err, ErrInvalidData) {
		t.Errorf("LuhnCheckDigit(bad) err = %v", err)
	}
	// every computed check digit makes a valid number
	for _, p := range []string{"400000000000000", "622202123456789012", "1"} {
		d, _ := LuhnCheckDigit(p)
		if !LuhnValid(p + string(d)) {
			t.Errorf("check digit for %s does not validate", p)
		}
	}
}

func TestMaskPAN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"6222021234567890128", "622202*********0128"},
		{"4111111111111111", "411111******1111"},
		{"4000001234562", "400000***4562"},
		{"123456789012", "********9012"},
		{"12345678", "********"},
		{"", ""},
	} {
		if got := MaskPAN(tc.in); got != tc.want {
			t.Errorf("MaskPAN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A PAN never formats in clear, whichever way it is printed.
func TestPANNeverFormatsInClear(t *testing.T) {
	p := mustPAN(t, testPAN)
	type holder struct {
		Card   PAN
		hidden PAN
	}
	h := holder{Card: p, hidden: p}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("txn", "pan", p, "h", h)
	js, _ := json.Marshal(h)
	txt, _ := p.MarshalText()
	outputs := []string{
		fmt.Sprint(p), fmt.Sprintf("%s %v %+v %#v %q %x %X %d", p, p, p, p, p, p, p, p),
		fmt.Sprintf("%v %+v %#v", h, h, h), fmt.Sprintf("%v", &h), p.String(),
		logs.String(), string(js), string(txt),
	}
	for _, out := range outputs {
		if strings.Contains(out, testPAN) || strings.Contains(out, "1234567890") {
			t.Errorf("clear PAN in output: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(p), "622202*********0128") {
		t.Errorf("masked form missing: %s", fmt.Sprint(p))
	}
	if p.Reveal() != testPAN || p.Last4() != "0128" || p.BIN() != "622202" || !p.HasPrefix("6222") {
		t.Error("accessors")
	}
	if !p.Equal(mustPAN(t, testPAN)) || p.Equal(mustPAN(t, "4111111111111111")) || (PAN{}).Reveal() != "" || !(PAN{}).IsZero() {
		t.Error("Equal/zero")
	}
}

func TestParsePANErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind error
	}{
		{"4111111111111112", ErrLuhn},
		{"41111111111", ErrInvalidPAN},
		{"41111111111111111111", ErrInvalidPAN},
		{"4111-1111-1111-1111", ErrInvalidPAN},
	} {
		_, err := ParsePAN(tc.in)
		if !errors.Is(err, tc.kind) {
			t.Errorf("ParsePAN(%q) = %v, want %v", tc.in, err, tc.kind)
		}
		if err != nil && strings.Contains(err.Error(), tc.in) && len(tc.in) >= 12 {
			t.Errorf("error leaks the number: %v", err)
		}
	}
}

func TestTrack2(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, in        string
		exp             string
		sc              ServiceCode
		disc            string
		kind            error
		expired, online bool
	}{
		{name: "equals separator", in: testPAN + "=2812101123456789", exp: "2812", sc: "101", disc: "123456789"},
		{name: "D separator and F pad", in: testPAN + "D28122010000F", exp: "2812", sc: "201", disc: "0000"},
		{name: "sentinels", in: ";" + testPAN + "=2811120?", exp: "2811", sc: "120", online: true},
		{name: "expired last month", in: testPAN + "=2610101", exp: "2610", sc: "101", expired: true},
		{name: "valid through month end", in: testPAN + "=2611101", exp: "2611", sc: "101"},
		{name: "no separator", in: testPAN + "2812101", kind: ErrInvalidTrack2},
		{name: "short after separator", in: testPAN + "=28121", kind: ErrInvalidTrack2},
		{name: "bad month", in: testPAN + "=2813101", kind: ErrInvalidTrack2},
		{name: "letters in data", in: testPAN + "=2812A01", kind: ErrInvalidTrack2},
		{name: "bad Luhn", in: "6222021234567890120=2812101", kind: ErrInvalidTrack2},
		{name: "too long", in: testPAN + "=2812101" + strings.Repeat("1", 20), kind: ErrInvalidTrack2},
		{name: "empty", in: "", kind: ErrInvalidTrack2},
		{name: "separator only", in: "=", kind: ErrInvalidTrack2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTrack2(tc.in)
			if tc.kind != nil {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("err = %v, want %v", err, tc.kind)
				}
				if strings.Contains(err.Error(), "1234567890") {
					t.Fatalf("error leaks the card number: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.PAN.Reveal() != testPAN || tr.Expiry.YYMM() != tc.exp || tr.ServiceCode != tc.sc || tr.Discretionary.Reveal() != tc.disc {
				t.Fatalf("parsed %s exp %s sc %s", tr, tr.Expiry.YYMM(), tr.ServiceCode)
			}
			if got := tr.CheckExpiry(now) != nil; got != tc.expired {
				t.Fatalf("expired = %v", got)
			}
			if tc.expired && !errors.Is(tr.CheckExpiry(now), ErrExpired) {
				t.Fatal("expiry error kind")
			}
			if tr.ServiceCode.OnlineOnly() != tc.online {
				t.Fatal("online only")
			}
			if s := fmt.Sprintf("%v %s %+v", tr, tr, tr); strings.Contains(s, testPAN) || (tc.disc != "" && strings.Contains(s, tc.disc)) {
				t.Fatalf("track 2 formats in clear: %s", s)
			}
			if back, err := ParseTrack2(tr.Reveal()); err != nil || back.Reveal() != tr.Reveal() {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
}

func TestServiceCode(t *testing.T) {
	for _, tc := range []struct {
		sc                                       ServiceCode
		intl, chip, pin, goods, purchase, online bool
	}{
		{"101", true, false, false, false, true, false},
		{"201", true, true, false, false, true, false},
		{"120", true, false, true, false, true, true},
		{"606", false, true, false, false, true, false},
		{"503", false, false, true, false, false, false},  // ATM only
		{"504", false, false, false, false, false, false}, // cash only
		{"225", true, true, true, true, true, true},
		{"1x1", true, false, false, false, false, false},
	} {
		got := [6]bool{tc.sc.International(), tc.sc.Chip(), tc.sc.PINRequired(), tc.sc.GoodsAndServicesOnly(), tc.sc.AllowsPurchase(), tc.sc.OnlineOnly()}
		want := [6]bool{tc.intl, tc.chip, tc.pin, tc.goods, tc.purchase, tc.online}
		if got != want {
			t.Errorf("%s: got %v want %v", tc.sc, got, want)
		}
	}
	if !ServiceCode("901").Test() || ServiceCode("").AllowsPurchase() {
		t.Error("test card / empty")
	}
	if _, err := ParseServiceCode("12"); !errors.Is(err, ErrInvalidServiceCode) {
		t.Error("short service code accepted")
	}
}

func TestCVV(t *testing.T) {
	cvk := mustKey(t, "0123456789ABCDEFFEDCBA9876543210")
	pan := mustPAN(t, "4123456789012349")
	cvv, err := CVV(cvk, pan, "2812", "101")
	if err != nil || len(cvv) != 3 || !isDigits(cvv) {
		t.Fatalf("CVV = %q, %v", cvv, err)
	}
	cvv2, _ := CVV(cvk, pan, "2812", ServiceCodeCVV2)
	icvv, _ := CVV(cvk, pan, "2812", ServiceCodeICVV)
	if err := VerifyCVV(cvk, pan, "2812", "101", cvv); err != nil {
		t.Fatal(err)
	}
	if err := VerifyCVV(cvk, pan, "2812", ServiceCodeCVV2, cvv2); err != nil {
		t.Fatal(err)
	}
	if err := VerifyCVV(cvk, pan, "2812", ServiceCodeICVV, icvv); err != nil {
		t.Fatal(err)
	}
	wrong := fmt.Sprintf("%03d", (atoi(cvv)+1)%1000)
	if err := VerifyCVV(cvk, pan, "2812", "101", wrong); !errors.Is(err, ErrCVVMismatch) {
		t.Fatalf("wrong CVV: %v", err)
	}
	if _, err := CVV(cvk[:8], pan, "2812", "101"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short CVK: %v", err)
	}
	if _, err := CVV(cvk, pan, "28A2", "101"); !errors.Is(err, ErrInvalidExpiry) {
		t.Fatalf("bad expiry: %v", err)
	}
	if _, err := CVV(cvk, pan, "2812", "1"); !errors.Is(err, ErrInvalidServiceCode) {
		t.Fatalf("bad service code: %v", err)
	}
	if _, err := CVV(cvk, PAN{}, "2812", "101"); !errors.Is(err, ErrInvalidPAN) {
		t.Fatalf("empty PAN: %v", err)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestPINBlocks(t *testing.T) {
	pik := mustKey(t, "0123456789ABCDEFFEDCBA9876543210")
	pan := mustPAN(t, testPAN)
	for _, p := range []string{"1234", "123456", "000000000000"} {
		pin, err := ParsePIN(p)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := EncryptPINBlock(pik, pin, pan)
		if err != nil || len(enc) != 8 {
			t.Fatalf("encrypt: %v", err)
		}
		got, err := DecryptPINBlock(pik, enc, pan)
		if err != nil || got.Reveal() != p {
			t.Fatalf("decrypt: %v", err)
		}
		ok, err := VerifyPIN(pik, enc, pan, pin)
		if err != nil || !ok {
			t.Fatalf("verify: %v %v", ok, err)
		}
		other, _ := ParsePIN("9999")
		if ok, err := VerifyPIN(pik, enc, pan, other); err != nil || ok {
			t.Fatalf("wrong PIN verified: %v %v", ok, err)
		}
		if s := fmt.Sprintf("%v %s %+v %#v", got, got, got, got); strings.Contains(s, p) {
			t.Fatalf("PIN formats in clear: %s", s)
		}
	}
	for _, bad := range []string{"123", "1234567890123", "12a4", ""} {
		if _, err := ParsePIN(bad); !errors.Is(err, ErrInvalidPIN) {
			t.Errorf("ParsePIN(%q) = %v", bad, err)
		}
	}
	// Malformed clear blocks are refused.
	zeroPAN := PAN{p: &panDigits{s: "0000000000000"}}
	for name, block := range map[string]string{
		"format 1":   "141234FFFFFFFFFF",
		"length 3":   "03123FFFFFFFFFFF",
		"length 13":  "0D1234567890123F",
		"hex digit":  "041A34FFFFFFFFFF",
		"fill not F": "041234FFFFFFFF0F",
		"short":      "041234FF",
	} {
		if _, err := ParsePINBlockFormat0(mustHex(t, block), zeroPAN); !errors.Is(err, ErrInvalidPINBlock) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A block enciphered under another key does not decrypt to a PIN.
	pin, _ := ParsePIN("1234")
	enc, _ := EncryptPINBlock(pik, pin, pan)
	other := mustKey(t, "1111111111111111")
	if _, err := DecryptPINBlock(other, enc, pan); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := DecryptPINBlock(pik, enc[:7], pan); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("short block: %v", err)
	}
}

func TestMACs(t *testing.T) {
	k16 := mustKey(t, "0123456789ABCDEFFEDCBA9876543210")
	k8 := mustKey(t, "0123456789ABCDEF")
	data := []byte("0200 purchase at the city library")
	for _, f := range []func(Key, []byte) ([]byte, error){MACX919, MACUnionPayECB} {
		m1, err := f(k16, data)
		if err != nil || len(m1) != 8 {
			t.Fatalf("mac: %v", err)
		}
		m8, err := f(k8, data)
		if err != nil || len(m8) != 8 {
			t.Fatalf("mac 8: %v", err)
		}
		if err := VerifyMAC(m1, m1); err != nil {
			t.Fatal(err)
		}
		tampered := append([]byte{}, data...)
		tampered[5] ^= 1
		m2, _ := f(k16, tampered)
		if err := VerifyMAC(m1, m2); !errors.Is(err, ErrMACMismatch) {
			t.Fatalf("tampered data verified: %v", err)
		}
		if _, err := f(Key(make([]byte, 24)), data); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("24-byte key: %v", err)
		}
		if _, err := f(k16, nil); err != nil {
			t.Fatalf("empty data: %v", err)
		}
	}
	// X9.19 with K1 = K2 equals the single-DES X9.9 MAC.
	a, _ := MACX919(k8, data)
	b, _ := MACX919(Key(append(append([]byte{}, k8...), k8...)), data)
	if !bytes.Equal(a, b) {
		t.Error("X9.19 with equal halves differs from X9.9")
	}
	// The ECB MAC is 8 upper-case hex characters.
	m, _ := MACUnionPayECB(k8, data)
	if _, err := hex.DecodeString(string(m)); err != nil || strings.ToUpper(string(m)) != string(m) {
		t.Errorf("ECB MAC %q is not upper-case hex", m)
	}
}

func TestKeys(t *testing.T) {
	if _, err := ParseKey("0123"); !errors.Is(err, ErrInvalidKey) {
		t.Error("short key accepted")
	}
	if _, err := ParseKey("zz23456789ABCDEF"); !errors.Is(err, ErrInvalidKey) {
		t.Error("non-hex key accepted")
	}
	k := mustKey(t, "0123456789ABCDEFFEDCBA9876543210")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%x %X %v %+v %#v %s", k, k, k, k, k, k)} {
		if strings.Contains(strings.ToUpper(s), "0123456789ABCDEF") || strings.Contains(s, "[1 35") {
			t.Errorf("key formats in clear: %s", s)
		}
		if !strings.Contains(s, "08D7B4") {
			t.Errorf("key format lacks its KCV: %s", s)
		}
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("k", "key", k)
	if strings.Contains(strings.ToUpper(logs.String()), "0123456789ABCDEF") {
		t.Errorf("key logged in clear: %s", logs.String())
	}
	if _, err := json.Marshal(struct{ K Key }{k}); err == nil {
		t.Error("key marshalled to JSON")
	}

	// parity
	raw := Key(mustHex(t, "0022446688AACCEE"))
	odd := AdjustOddParity(raw)
	if !HasOddParity(odd) || HasOddParity(raw) || hex.EncodeToString(odd) != "0123456789abcdef" {
		t.Errorf("parity: %x", []byte(odd))
	}
	if !HasOddParity(k) {
		t.Error("test key should have odd parity")
	}

	// wrap and unwrap under a master key, with check values
	tmk := mustKey(t, "0123456789ABCDEFFEDCBA9876543210")
	work := mustKey(t, "C24A8FB57AA20123")
	wrapped, err := WrapKey(tmk, work)
	if err != nil {
		t.Fatal(err)
	}
	cv, _ := CheckValue(work, 4)
	got, err := UnwrapKey(tmk, wrapped, cv)
	if err != nil || !got.Equal(work) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := UnwrapKey(mustKey(t, "1111111111111111"), wrapped, cv); !errors.Is(err, ErrKeyCheck) {
		t.Fatalf("wrong master key: %v", err)
	}
	if _, err := UnwrapKey(tmk, wrapped, nil); !errors.Is(err, ErrKeyCheck) {
		t.Fatalf("no check value: %v", err)
	}
	if _, err := UnwrapKey(tmk, wrapped[:5], cv); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short wrapped key: %v", err)
	}
	if _, err := WrapKey(tmk, Key{1, 2, 3}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short working key: %v", err)
	}
	if _, err := EncryptECB(tmk, []byte{1, 2, 3}); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("partial block: %v", err)
	}
	if _, err := CheckValue(tmk, 9); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("check value length: %v", err)
	}
	w := Key{1, 2, 3}
	w.Wipe()
	if !bytes.Equal(w, []byte{0, 0, 0}) {
		t.Error("wipe")
	}
}

func TestSignOnKeys(t *testing.T) {
	tmk := mustKey(t, "70F2A84CCBC2AE8625CBB0F2C22AB923")
	pik16 := mustKey(t, "1C1C2C2C3D3D4C4C5D5D6E6E7F7F8080")
	pik8 := mustKey(t, "1C1C2C2C3D3D4C4C")
	mak8 := mustKey(t, "C24A8FB57AA20123")
	mak16 := mustKey(t, "C24A8FB57AA201230123456789ABCDEF")
	tdk := mustKey(t, "FEDCBA98765432100123456789ABCDEF")
	for _, tc := range []struct {
		name string
		w    WorkingKeys
		size int
	}{
		{"single", WorkingKeys{PIN: pik8, MAC: mak8}, SignOnKeysSingle},
		{"double with single MAK", WorkingKeys{PIN: pik16, MAC: mak8}, SignOnKeysDouble},
		{"double", WorkingKeys{PIN: pik16, MAC: mak16}, SignOnKeysDouble},
		{"with data key", WorkingKeys{PIN: pik16, MAC: mak8, Data: tdk}, SignOnKeysWithData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f62, err := BuildSignOnKeys(tmk, tc.w)
			if err != nil || len(f62) != tc.size {
				t.Fatalf("build: %d bytes, %v", len(f62), err)
			}
			got, err := ParseSignOnKeys(tmk, f62)
			if err != nil {
				t.Fatal(err)
			}
			if !got.PIN.Equal(tc.w.PIN) || !got.MAC.Equal(tc.w.MAC) || !got.Data.Equal(tc.w.Data) {
				t.Fatal("keys differ after the round trip")
			}
			// a corrupted check value is caught, and the error names the key
			bad := append([]byte{}, f62...)
			bad[len(bad)-1] ^= 0xFF
			_, err = ParseSignOnKeys(tmk, bad)
			if !errors.Is(err, ErrKeyCheck) {
				t.Fatalf("corrupted: %v", err)
			}
			if tc.w.Data != nil && !strings.Contains(err.Error(), "data key") {
				t.Fatalf("error does not say which key: %v", err)
			}
			// under another master key nothing unwraps
			if _, err := ParseSignOnKeys(mustKey(t, "0123456789ABCDEFFEDCBA9876543210"), f62); !errors.Is(err, ErrKeyCheck) {
				t.Fatalf("wrong TMK: %v", err)
			}
		})
	}
	if _, err := ParseSignOnKeys(tmk, make([]byte, 30)); !errors.Is(err, ErrInvalidData) {
		t.Errorf("odd length: %v", err)
	}
	if _, err := BuildSignOnKeys(tmk, WorkingKeys{PIN: pik8, MAC: mak16}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("mixed lengths: %v", err)
	}
	if _, err := BuildSignOnKeys(tmk, WorkingKeys{PIN: Key{1}, MAC: mak8}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("bad PIN key: %v", err)
	}
}

func TestKeyStore(t *testing.T) {
	top := bytes.Repeat([]byte{0x42}, 32)
	topHex := hex.EncodeToString(top)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "top.key")
	if err := os.WriteFile(keyFile, []byte(topHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmk := mustKey(t, "70F2A84CCBC2AE8625CBB0F2C22AB923")

	t.Setenv("CITYCARD_TEST_TOP_KEY", topHex)
	fromEnv, err := OpenKeyStore(TopKeySource{Env: "CITYCARD_TEST_TOP_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := OpenKeyStore(TopKeySource{Env: "CITYCARD_TEST_UNSET", File: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := fromEnv.Seal("terminal/10000001/tmk", tmk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, tmk) {
		t.Fatal("key in clear inside the blob")
	}
	got, err := fromFile.Open("terminal/10000001/tmk", blob)
	if err != nil || !got.Equal(tmk) {
		t.Fatalf("open: %v", err)
	}
	// base64 top keys work too
	t.Setenv("CITYCARD_TEST_TOP_KEY_B64", "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=")
	if ks, err := OpenKeyStore(TopKeySource{Env: "CITYCARD_TEST_TOP_KEY_B64"}); err != nil {
		t.Fatal(err)
	} else if _, err := ks.Open("terminal/10000001/tmk", blob); err != nil {
		t.Fatalf("base64 key: %v", err)
	}

	// wrong name, wrong top key, altered blob
	if _, err := fromEnv.Open("terminal/10000002/tmk", blob); !errors.Is(err, ErrKeyStoreOpen) {
		t.Errorf("wrong name: %v", err)
	}
	other, _ := NewKeyStore(bytes.Repeat([]byte{0x43}, 32))
	if _, err := other.Open("terminal/10000001/tmk", blob); !errors.Is(err, ErrKeyStoreOpen) {
		t.Errorf("wrong top key: %v", err)
	}
	altered := append([]byte{}, blob...)
	altered[len(altered)-1] ^= 1
	if _, err := fromEnv.Open("terminal/10000001/tmk", altered); !errors.Is(err, ErrKeyStoreOpen) {
		t.Errorf("altered: %v", err)
	}
	if _, err := fromEnv.Open("x", []byte{1, 2}); !errors.Is(err, ErrKeyStoreOpen) {
		t.Errorf("short blob: %v", err)
	}
	if _, err := fromEnv.Seal("x", nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("empty key sealed: %v", err)
	}

	// missing and malformed top keys say where they looked, never the key
	_, err = OpenKeyStore(TopKeySource{Env: "CITYCARD_TEST_UNSET", File: filepath.Join(dir, "absent")})
	if !errors.Is(err, ErrTopKeyMissing) || !strings.Contains(err.Error(), "CITYCARD_TEST_UNSET") {
		t.Errorf("missing: %v", err)
	}
	if _, err := OpenKeyStore(TopKeySource{}); !errors.Is(err, ErrTopKeyMissing) {
		t.Errorf("no source: %v", err)
	}
	t.Setenv("CITYCARD_TEST_SHORT", "abcdef0123")
	_, err = OpenKeyStore(TopKeySource{Env: "CITYCARD_TEST_SHORT"})
	if !errors.Is(err, ErrTopKeyInvalid) || strings.Contains(err.Error(), "abcdef0123") {
		t.Errorf("malformed: %v", err)
	}
	if _, err := NewKeyStore(top[:16]); !errors.Is(err, ErrTopKeyInvalid) {
		t.Errorf("16-byte top key: %v", err)
	}
	if _, err := OpenKeyStore(TopKeySource{File: dir}); !errors.Is(err, ErrTopKeyMissing) {
		t.Errorf("directory as key file: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	err := newErr("Op", ErrExpired, "expired 2501")
	var e *Error
	if !errors.As(err, &e) || e.Op != "Op" || err.Error() != "cardcrypto: Op: card expired: expired 2501" {
		t.Fatalf("error = %v", err)
	}
}
