package cardcrypto

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Service codes substituted for the card's own in the CVV algorithm to give
// the other card verification values.
const (
	// ServiceCodeCVV2 is used for the value printed on the card (CVV2/CVC2).
	ServiceCodeCVV2 ServiceCode = "000"
	// ServiceCodeICVV is used for the value in a chip's track 2 image (iCVV).
	ServiceCodeICVV ServiceCode = "999"
)

// CVV computes a 3-digit card verification value with the public Visa
// algorithm (also used by Mastercard as CVC and by UnionPay as CVN) under a
// CVK pair: cvk is 16 bytes, key A then key B. expiry is the four digits in
// the order the issuer uses (YYMM on the stripe). Use ServiceCodeCVV2 or
// ServiceCodeICVV as the service code for CVV2 and iCVV.
func CVV(cvk Key, pan PAN, expiry string, sc ServiceCode) (string, error) {
	return cvvDigits(cvk, pan.Reveal(), expiry, string(sc), 3)
}

// VerifyCVV recomputes the value and compares it with got in constant time.
// It returns an error wrapping ErrCVVMismatch when they differ.
func VerifyCVV(cvk Key, pan PAN, expiry string, sc ServiceCode, got string) error {
	want, err := CVV(cvk, pan, expiry, sc)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return newErr("VerifyCVV", ErrCVVMismatch, "")
	}
	return nil
}

func cvvDigits(cvk Key, pan, expiry, sc string, n int) (string, error) {
	const op = "CVV"
	if len(cvk) != 16 {
		return "", newErr(op, ErrInvalidKey, "a CVK pair is 16 bytes (key A, key B)")
	}
	if len(pan) < 12 || len(pan) > 19 || !isDigits(pan) {
		return "", newErr(op, ErrInvalidPAN, "")
	}
	if len(expiry) != 4 || !isDigits(expiry) {
		return "", newErr(op, ErrInvalidExpiry, "want four digits")
	}
	if len(sc) != 3 || !isDigits(sc) {
		return "", newErr(op, ErrInvalidServiceCode, "")
	}
	// PAN, expiry and service code, right-filled with zeros to 32 digits:
	// two 8-byte blocks.
	data := pan + expiry + sc
	data += strings.Repeat("0", 32-len(data))
	raw, err := hex.DecodeString(data)
	if err != nil {
		return "", newErr(op, ErrInvalidData, "")
	}
	keyA, _ := blockCipher(op, cvk[:8])
	tdes, err := blockCipher(op, cvk)
	if err != nil {
		return "", err
	}
	var r [8]byte
	keyA.Encrypt(r[:], raw[:8])
	for i := range r {
		r[i] ^= raw[8+i]
	}
	tdes.Encrypt(r[:], r[:])
	out := decimalize(hex.EncodeToString(r[:]))
	if len(out) < n {
		return "", newErr(op, ErrInvalidData, fmt.Sprintf("decimalisation gave %d digits", len(out)))
	}
	return out[:n], nil
}

// decimalize keeps the decimal digits of a hex string from left to right,
// then appends the letters a-f, each less 10.
func decimalize(h string) string {
	var digits, letters []byte
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c >= 'a' && c <= 'f':
			letters = append(letters, '0'+(c-'a'))
		case c >= 'A' && c <= 'F':
			letters = append(letters, '0'+(c-'A'))
		}
	}
	return string(append(digits, letters...))
}
