package cardcrypto

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// Key is a DES or triple-DES key: 8 bytes (single DES), 16 bytes (two-key
// 3DES, K1 K2 K1) or 24 bytes (three-key 3DES). It formats as its check value,
// never as key bytes, so a key that reaches a log line does no harm.
type Key []byte

// ParseKey decodes a key from hex (16, 32 or 48 hex digits).
func ParseKey(hexKey string) (Key, error) {
	b, err := hex.DecodeString(strings.TrimSpace(hexKey))
	if err != nil {
		return nil, newErr("ParseKey", ErrInvalidKey, "not hex")
	}
	if !validKeyLen(len(b)) {
		return nil, newErr("ParseKey", ErrInvalidKey, fmt.Sprintf("%d bytes, want 8, 16 or 24", len(b)))
	}
	return Key(b), nil
}

func validKeyLen(n int) bool { return n == 8 || n == 16 || n == 24 }

// String gives the key's length and check value only.
func (k Key) String() string {
	kcv, err := KCV(k)
	if err != nil {
		return fmt.Sprintf("Key(invalid, %d bytes)", len(k))
	}
	return fmt.Sprintf("Key(%d bytes, KCV %X)", len(k), kcv)
}

// Format prints String for every verb, so %x and %v never show key bytes.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue prints String in slog output.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText refuses: a key in clear is never serialised by accident. Use
// KeyStore to keep keys at rest.
func (k Key) MarshalText() ([]byte, error) {
	return nil, newErr("Key.MarshalText", ErrInvalidKey, "keys in clear are not serialised")
}

// Equal compares keys in constant time.
func (k Key) Equal(o Key) bool { return subtle.ConstantTimeCompare(k, o) == 1 }

// Wipe overwrites the key bytes with zeros.
func (k Key) Wipe() {
	for i := range k {
		k[i] = 0
	}
}

// blockCipher returns single DES for an 8-byte key and 3DES (EDE) for 16 or
// 24 bytes; a 16-byte key is used as K1 K2 K1.
func blockCipher(op string, k Key) (cipher.Block, error) {
	switch len(k) {
	case 8:
		b, err := des.NewCipher(k)
		if err != nil {
			return nil, newErr(op, ErrInvalidKey, "DES key rejected")
		}
		return b, nil
	case 16, 24:
		k3 := make([]byte, 24)
		copy(k3, k)
		if len(k) == 16 {
			copy(k3[16:], k[:8])
		}
		b, err := des.NewTripleDESCipher(k3)
		if err != nil {
			return nil, newErr(op, ErrInvalidKey, "3DES key rejected")
		}
		return b, nil
	default:
		return nil, newErr(op, ErrInvalidKey, fmt.Sprintf("%d bytes, want 8, 16 or 24", len(k)))
	}
}

// ecb applies the cipher block by block; data must be a multiple of 8 bytes.
func ecb(op string, k Key, data []byte, decrypt bool) ([]byte, error) {
	if len(data) == 0 || len(data)%8 != 0 {
		return nil, newErr(op, ErrInvalidData, fmt.Sprintf("%d bytes, want a non-zero multiple of 8", len(data)))
	}
	b, err := blockCipher(op, k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:i+8], data[i:i+8])
		} else {
			b.Encrypt(out[i:i+8], data[i:i+8])
		}
	}
	return out, nil
}

// EncryptECB encrypts data (a multiple of 8 bytes) under k in ECB mode, the
// mode in which terminal keys and PIN blocks are enciphered.
func EncryptECB(k Key, data []byte) ([]byte, error) { return ecb("EncryptECB", k, data, false) }

// DecryptECB decrypts data (a multiple of 8 bytes) under k in ECB mode.
func DecryptECB(k Key, data []byte) ([]byte, error) { return ecb("DecryptECB", k, data, true) }

// CheckValue encrypts eight zero bytes under k and returns the first n bytes
// (1 to 8). UnionPay sign-on responses carry 4-byte check values.
func CheckValue(k Key, n int) ([]byte, error) {
	if n < 1 || n > 8 {
		return nil, newErr("CheckValue", ErrInvalidData, "length must be 1 to 8")
	}
	out, err := ecb("CheckValue", k, make([]byte, 8), false)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// KCV returns the conventional 3-byte key check value: the first three bytes
// of eight zero bytes encrypted under k.
func KCV(k Key) ([]byte, error) { return CheckValue(k, 3) }

// VerifyCheckValue reports whether want (1 to 8 bytes) is k's check value,
// comparing in constant time.
func VerifyCheckValue(k Key, want []byte) error {
	got, err := CheckValue(k, len(want))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return newErr("VerifyCheckValue", ErrKeyCheck, "")
	}
	return nil
}

// AdjustOddParity returns a copy of k with each byte's low bit set so that
// the byte has an odd number of one bits, as DES keys conventionally do.
func AdjustOddParity(k Key) Key {
	out := make(Key, len(k))
	for i, b := range k {
		b &^= 1
		if onesCount(b)%2 == 0 {
			b |= 1
		}
		out[i] = b
	}
	return out
}

// HasOddParity reports whether every byte of k has odd parity.
func HasOddParity(k Key) bool {
	for _, b := range k {
		if onesCount(b)%2 == 0 {
			return false
		}
	}
	return len(k) > 0
}

func onesCount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// WrapKey encrypts a working key under a key-encryption key (a terminal
// master key) in ECB mode, as a host does before sending it in a sign-on
// response.
func WrapKey(kek, key Key) ([]byte, error) {
	if !validKeyLen(len(key)) {
		return nil, newErr("WrapKey", ErrInvalidKey, "working key must be 8, 16 or 24 bytes")
	}
	return ecb("WrapKey", kek, key, false)
}

// UnwrapKey decrypts a working key enciphered under kek and checks it
// against checkValue (its first len(checkValue) bytes of E(key, 0^8)). An
// empty checkValue is refused: a key delivered without a check value cannot
// be trusted.
func UnwrapKey(kek Key, wrapped, checkValue []byte) (Key, error) {
	const op = "UnwrapKey"
	if !validKeyLen(len(wrapped)) {
		return nil, newErr(op, ErrInvalidKey, fmt.Sprintf("wrapped key is %d bytes, want 8, 16 or 24", len(wrapped)))
	}
	if len(checkValue) == 0 {
		return nil, newErr(op, ErrKeyCheck, "no check value supplied")
	}
	clear, err := ecb(op, kek, wrapped, true)
	if err != nil {
		return nil, err
	}
	k := Key(clear)
	if err := VerifyCheckValue(k, checkValue); err != nil {
		k.Wipe()
		return nil, newErr(op, ErrKeyCheck, "decrypted key does not match its check value (wrong master key?)")
	}
	return k, nil
}
