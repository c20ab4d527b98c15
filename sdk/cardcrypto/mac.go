package cardcrypto

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// MACX919 computes the ANSI X9.19 retail MAC (ISO/IEC 9797-1 MAC algorithm 3
// with padding method 1): data is zero-filled to a multiple of 8 bytes,
// CBC-enciphered with single DES under the left half of the key, and the last
// block is then deciphered under the right half and enciphered again under the
// left. key is 16 bytes; an 8-byte key gives the single-DES ANSI X9.9 MAC.
// The full 8 bytes are returned; links that send 4 take the first 4.
func MACX919(key Key, data []byte) ([]byte, error) {
	const op = "MACX919"
	if len(key) != 8 && len(key) != 16 {
		return nil, newErr(op, ErrInvalidKey, "want an 8- or 16-byte MAC key")
	}
	left, err := blockCipher(op, key[:8])
	if err != nil {
		return nil, err
	}
	var state [8]byte
	padded := zeroPad(data)
	for i := 0; i < len(padded); i += 8 {
		for j := 0; j < 8; j++ {
			state[j] ^= padded[i+j]
		}
		left.Encrypt(state[:], state[:])
	}
	if len(key) == 16 {
		right, err := blockCipher(op, key[8:])
		if err != nil {
			return nil, err
		}
		right.Decrypt(state[:], state[:])
		left.Encrypt(state[:], state[:])
	}
	return state[:], nil
}

// MACUnionPayECB computes the MAC of the UnionPay POS terminal
// specification (the "ECB" algorithm):
//
//  1. zero-fill the MAC element block (MTI up to, not including, field 64)
//     to a multiple of 8 bytes and XOR all the 8-byte blocks together;
//  2. write the 8-byte result as 16 upper-case hex characters;
//  3. encipher the first 8 characters under the MAC key;
//  4. XOR that with the last 8 characters and encipher the result again;
//  5. write it as 16 upper-case hex characters: the first 8 are the MAC.
//
// key is 8 bytes (single DES, as most terminals use) or 16 (3DES).
func MACUnionPayECB(key Key, data []byte) ([]byte, error) {
	const op = "MACUnionPayECB"
	if len(key) != 8 && len(key) != 16 {
		return nil, newErr(op, ErrInvalidKey, "want an 8- or 16-byte MAC key")
	}
	b, err := blockCipher(op, key)
	if err != nil {
		return nil, err
	}
	x := xorBlocks(data)
	h := []byte(strings.ToUpper(hex.EncodeToString(x[:])))
	var e [8]byte
	b.Encrypt(e[:], h[:8])
	for i := range e {
		e[i] ^= h[8+i]
	}
	b.Encrypt(e[:], e[:])
	out := []byte(strings.ToUpper(hex.EncodeToString(e[:])))
	return out[:8], nil
}

// xorBlocks zero-fills data to a multiple of 8 bytes and XORs the blocks.
func xorBlocks(data []byte) [8]byte {
	var x [8]byte
	for i, c := range data {
		x[i%8] ^= c
	}
	return x
}

// zeroPad fills data with 0x00 to a multiple of 8 bytes (at least one block).
func zeroPad(data []byte) []byte {
	n := len(data)
	if n == 0 || n%8 != 0 {
		n += 8 - n%8
	}
	out := make([]byte, n)
	copy(out, data)
	return out
}

// EqualMAC compares two MACs in constant time.
func EqualMAC(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// VerifyMAC compares a received MAC with the expected one in constant time
// and returns an error wrapping ErrMACMismatch when they differ.
func VerifyMAC(want, got []byte) error {
	if !EqualMAC(want, got) {
		return newErr("VerifyMAC", ErrMACMismatch, "")
	}
	return nil
}
