package iso

import (
	"encoding/hex"
	"fmt"

	"github.com/moov-io/iso8583/encoding"
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
