package iso

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/prefix"
)

// trackEncoding packs track data (ISO 8583 type "z": digits and the field
// separator) two characters a byte, left-aligned, the separator ('=' or
// 'D') as nibble D and an odd length filled with a 0 nibble. Decoding gives
// '=' for the separator and refuses any other nibble above 9.
type trackEncoding struct{}

var _ encoding.Encoder = trackEncoding{}

func (trackEncoding) Encode(src []byte) ([]byte, error) {
	out := make([]byte, (len(src)+1)/2)
	for i, c := range src {
		var n byte
		switch {
		case c >= '0' && c <= '9':
			n = c - '0'
		case c == '=' || c == 'D' || c == 'd':
			n = 0xD
		default:
			return nil, fmt.Errorf("track data may hold digits and '=' only: %w", ErrInvalidValue)
		}
		if i%2 == 0 {
			out[i/2] = n << 4
		} else {
			out[i/2] |= n
		}
	}
	return out, nil
}

func (trackEncoding) Decode(src []byte, length int) ([]byte, int, error) {
	if length < 0 {
		return nil, 0, fmt.Errorf("negative length %d", length)
	}
	read := (length + 1) / 2
	if len(src) < read {
		return nil, 0, fmt.Errorf("not enough data to decode: need %d bytes, have %d", read, len(src))
	}
	out := make([]byte, length)
	for i := 0; i < length; i++ {
		n := src[i/2] >> 4
		if i%2 == 1 {
			n = src[i/2] & 0x0F
		}
		switch {
		case n <= 9:
			out[i] = '0' + n
		case n == 0xD:
			out[i] = '='
		default:
			return nil, 0, fmt.Errorf("nibble %X is not track data", n)
		}
	}
	if length%2 == 1 && src[read-1]&0x0F != 0 {
		return nil, 0, fmt.Errorf("fill nibble is not 0")
	}
	return out, read, nil
}

func hexBytes(s string) ([]byte, error) { return hex.DecodeString(s) }

// bcdEncoding packs decimal digits two a byte. Odd lengths get a 0 pad
// nibble: in front when right-aligned (the default for numbers), at the end
// when left-aligned (card numbers, field 60 and the like). Decoding refuses
// nibbles above 9 and a non-zero pad, so every accepted value has one
// encoding. (The library's BCD encoder builds lookup tables on every call,
// which made BCD work most of the cost of a message.)
type bcdEncoding struct{ left bool }

var (
	bcdRight encoding.Encoder = bcdEncoding{}
	bcdLeft  encoding.Encoder = bcdEncoding{left: true}
)

func (e bcdEncoding) Encode(src []byte) ([]byte, error) {
	n := len(src)
	out := make([]byte, (n+1)/2)
	shift := 0 // nibble index of src[0]
	if n%2 == 1 && !e.left {
		shift = 1
	}
	for i, c := range src {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("BCD value may hold digits only: %w", ErrInvalidValue)
		}
		j := i + shift
		if j%2 == 0 {
			out[j/2] |= (c - '0') << 4
		} else {
			out[j/2] |= c - '0'
		}
	}
	return out, nil
}

func (e bcdEncoding) Decode(src []byte, length int) ([]byte, int, error) {
	if length < 0 {
		return nil, 0, fmt.Errorf("negative length %d", length)
	}
	read := (length + 1) / 2
	if len(src) < read {
		return nil, 0, fmt.Errorf("not enough data to decode: need %d bytes, have %d", read, len(src))
	}
	shift := 0
	if length%2 == 1 && !e.left {
		shift = 1
		if src[0]>>4 != 0 {
			return nil, 0, fmt.Errorf("pad nibble is not 0")
		}
	}
	if length%2 == 1 && e.left && src[read-1]&0x0F != 0 {
		return nil, 0, fmt.Errorf("pad nibble is not 0")
	}
	out := make([]byte, length)
	for i := range out {
		j := i + shift
		n := src[j/2] >> 4
		if j%2 == 1 {
			n = src[j/2] & 0x0F
		}
		if n > 9 {
			return nil, 0, fmt.Errorf("nibble %X is not a decimal digit", n)
		}
		out[i] = '0' + n
	}
	return out, read, nil
}

// bcdLength is a length prefix of 2 (LLVAR, one byte) or 3 (LLLVAR, two
// bytes) BCD digits, right-aligned.
type bcdLength struct{ digits int }

var (
	bcdLL  prefix.Prefixer = bcdLength{digits: 2}
	bcdLLL prefix.Prefixer = bcdLength{digits: 3}
)

func (p bcdLength) EncodeLength(maxLen, dataLen int) ([]byte, error) {
	if dataLen > maxLen {
		return nil, fmt.Errorf("length %d exceeds maximum %d: %w", dataLen, maxLen, ErrInvalidValue)
	}
	return bcdRight.Encode([]byte(fmt.Sprintf("%0*d", p.digits, dataLen)))
}

func (p bcdLength) DecodeLength(maxLen int, data []byte) (int, int, error) {
	digits, read, err := bcdRight.Decode(data, p.digits)
	if err != nil {
		return 0, 0, fmt.Errorf("length prefix: %w", err)
	}
	n := 0
	for _, d := range digits {
		n = n*10 + int(d-'0')
	}
	if n > maxLen {
		return 0, 0, fmt.Errorf("length %d exceeds maximum %d", n, maxLen)
	}
	return n, read, nil
}

func (p bcdLength) Inspect() string { return fmt.Sprintf("BCD.%s", strings.Repeat("L", p.digits)) }
