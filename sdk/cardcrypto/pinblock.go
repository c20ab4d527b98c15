package cardcrypto

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// PIN is a cardholder PIN held for the length of one verification. It
// formats as asterisks, never as digits.
type PIN struct{ p *string }

// ParsePIN accepts 4 to 12 decimal digits.
func ParsePIN(s string) (PIN, error) {
	if len(s) < 4 || len(s) > 12 || !isDigits(s) {
		return PIN{}, newErr("ParsePIN", ErrInvalidPIN, "want 4 to 12 digits")
	}
	return PIN{p: &s}, nil
}

// Reveal returns the clear PIN.
func (p PIN) Reveal() string {
	if p.p == nil {
		return ""
	}
	return *p.p
}

// String gives asterisks only.
func (p PIN) String() string { return "****" }

// Format gives asterisks for every verb.
func (p PIN) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue gives asterisks in slog output.
func (p PIN) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Equal compares two PINs in constant time with respect to their digits
// (both are padded to the longest PIN length before comparing).
func (p PIN) Equal(q PIN) bool {
	a := []byte(padPIN(p.Reveal()))
	b := []byte(padPIN(q.Reveal()))
	return subtle.ConstantTimeCompare(a, b) == 1
}

func padPIN(s string) string {
	if len(s) >= 12 {
		return s
	}
	return s + strings.Repeat("F", 12-len(s))
}

// panField is the PAN half of an ISO 9564 format 0 block: four zero digits
// and the 12 rightmost digits of the card number excluding the check digit.
func panField(pan string) ([]byte, error) {
	if len(pan) < 13 || !isDigits(pan) {
		return nil, newErr("PINBlock", ErrInvalidPAN, "need at least 13 digits")
	}
	digits := pan[len(pan)-13 : len(pan)-1]
	return hex.DecodeString("0000" + digits)
}

// PINBlockFormat0 builds a clear ISO 9564-1 format 0 (ANSI X9.8) PIN block:
// control 0, PIN length, PIN, 'F' fill, XORed with the PAN field.
func PINBlockFormat0(pin PIN, pan PAN) ([]byte, error) {
	p := pin.Reveal()
	if len(p) < 4 || len(p) > 12 || !isDigits(p) {
		return nil, newErr("PINBlockFormat0", ErrInvalidPIN, "want 4 to 12 digits")
	}
	pf, err := hex.DecodeString(fmt.Sprintf("0%X%s", len(p), p) + strings.Repeat("F", 14-len(p)))
	if err != nil {
		return nil, newErr("PINBlockFormat0", ErrInvalidPIN, "")
	}
	af, err := panField(pan.Reveal())
	if err != nil {
		return nil, err
	}
	for i := range pf {
		pf[i] ^= af[i]
	}
	return pf, nil
}

// ParsePINBlockFormat0 recovers the PIN from a clear format 0 block. It
// refuses a block whose control nibble is not 0, whose length is outside 4 to
// 12, whose PIN digits are not decimal or whose fill is not all 'F': the usual
// sign of a block enciphered under another key or for another card.
func ParsePINBlockFormat0(block []byte, pan PAN) (PIN, error) {
	const op = "ParsePINBlockFormat0"
	if len(block) != 8 {
		return PIN{}, newErr(op, ErrInvalidPINBlock, fmt.Sprintf("%d bytes, want 8", len(block)))
	}
	af, err := panField(pan.Reveal())
	if err != nil {
		return PIN{}, err
	}
	var pf [8]byte
	for i := range pf {
		pf[i] = block[i] ^ af[i]
	}
	h := strings.ToUpper(hex.EncodeToString(pf[:]))
	if h[0] != '0' {
		return PIN{}, newErr(op, ErrInvalidPINBlock, "format is not 0")
	}
	n := strings.IndexByte("0123456789ABCDEF", h[1])
	if n < 4 || n > 12 {
		return PIN{}, newErr(op, ErrInvalidPINBlock, "PIN length out of range")
	}
	p := h[2 : 2+n]
	if !isDigits(p) {
		return PIN{}, newErr(op, ErrInvalidPINBlock, "PIN digits are not decimal")
	}
	if strings.Trim(h[2+n:], "F") != "" {
		return PIN{}, newErr(op, ErrInvalidPINBlock, "fill is not F")
	}
	return PIN{p: &p}, nil
}

// EncryptPINBlock builds a format 0 block and enciphers it under the PIN key
// (single DES or 3DES, ECB), as a PIN pad does for ISO 8583 field 52.
func EncryptPINBlock(pik Key, pin PIN, pan PAN) ([]byte, error) {
	clear, err := PINBlockFormat0(pin, pan)
	if err != nil {
		return nil, err
	}
	return ecb("EncryptPINBlock", pik, clear, false)
}

// DecryptPINBlock deciphers field 52 under the PIN key and parses the format
// 0 block. An error wrapping ErrInvalidPINBlock means the block cannot be
// decrypted to a valid PIN (response code 99 on a UnionPay POS link).
func DecryptPINBlock(pik Key, block []byte, pan PAN) (PIN, error) {
	if len(block) != 8 {
		return PIN{}, newErr("DecryptPINBlock", ErrInvalidPINBlock, fmt.Sprintf("%d bytes, want 8", len(block)))
	}
	clear, err := ecb("DecryptPINBlock", pik, block, true)
	if err != nil {
		return PIN{}, err
	}
	return ParsePINBlockFormat0(clear, pan)
}

// VerifyPIN deciphers an encrypted PIN block and compares its PIN with the
// expected one in constant time. It returns false with a nil error for a
// wrong PIN, and an error when the block itself is unusable.
func VerifyPIN(pik Key, block []byte, pan PAN, want PIN) (bool, error) {
	got, err := DecryptPINBlock(pik, block, pan)
	if err != nil {
		return false, err
	}
	return got.Equal(want), nil
}
