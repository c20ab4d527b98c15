package iso

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	iso8583errors "github.com/moov-io/iso8583/errors"
)

// body assembles envelope, MTI, bitmap and field bytes given in hex.
func body(t testing.TB, mti, bitmap, fields string) []byte {
	t.Helper()
	return unhex(t, DefaultEnvelope(3, 0).TPDU.String()+DefaultHeader().String()+mti+bitmap+fields)
}

func frameOf(b []byte) []byte {
	out := make([]byte, 2, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	return append(out, b...)
}

const (
	netBitmap = "0020000000800000" // fields 11 and 41
	netFields = "000001" + "3130303030303031"
)

func TestDecodeErrors(t *testing.T) {
	good := frameOf(body(t, "0800", netBitmap, netFields))
	if _, err := DecodeFrame(good); err != nil {
		t.Fatalf("good frame: %v", err)
	}
	panDigits := "6222021234567890128"
	cases := []struct {
		name  string
		frame []byte
		kind  error
		field int
	}{
		{"empty", nil, ErrTruncated, -1},
		{"one byte", []byte{0}, ErrTruncated, -1},
		{"zero length", []byte{0, 0}, ErrFrameLength, -1},
		{"truncated frame", good[:len(good)-3], ErrFrameLength, -1},
		{"length too short", append([]byte{0, byte(len(good) - 3)}, good[2:]...), ErrFrameLength, -1},
		{"trailing bytes in frame", append(append([]byte{}, good...), 0), ErrFrameLength, -1},
		{"shorter than envelope", frameOf(unhex(t, "6000030000603100")), ErrTruncated, -1},
		{"TPDU ID", frameOf(append([]byte{0x61}, body(t, "0800", netBitmap, netFields)[1:]...)), ErrTPDU, 0},
		{"header", frameOf(unhex(t, "6000030000"+"6F3100000000"+"0800"+netBitmap+netFields)), ErrHeader, 0},
		{"MTI", frameOf(body(t, "08A0", netBitmap, netFields)), ErrMTI, 0},
		{"bitmap names undefined field 5", frameOf(body(t, "0800", "0820000000800000", "000000000001"+netFields)), ErrBitmap, 1},
		{"bitmap names field 66", frameOf(body(t, "0800", "8020000000800000"+"4000000000000000", netFields+"00")), ErrBitmap, 1},
		{"secondary bitmap cut short", frameOf(body(t, "0800", "8020000000800000", "0000")), ErrBitmap, 1},
		{"field cut short", frameOf(body(t, "0800", netBitmap, "000001"+"31303030")), ErrField, 41},
		{"BCD field not BCD", frameOf(body(t, "0800", netBitmap, "00A001"+"3130303030303031")), ErrField, 11},
		{"PAN too long", frameOf(body(t, "0200", "4020000000800000", "25"+panDigits+"0"+"000001"+"3130303030303031")), ErrField, 2},
		{"PAN filled with F", frameOf(body(t, "0200", "4020000000800000", "19"+"622202123456789012"+"8F"+"000001"+"3130303030303031")), ErrField, 2},
		{"PAN not BCD", frameOf(body(t, "0200", "4020000000800000", "19"+"6222021234567890A2"+"80"+"000001"+"3130303030303031")), ErrField, 2},
		{"track 2 bad nibble", frameOf(body(t, "0200", "0020000020800000", "000001"+"25"+panDigits+"E"+"28121"+"0"+"3130303030303031")), ErrField, 35},
		{"trailing bytes after last field", frameOf(append(body(t, "0800", netBitmap, netFields), 0x00)), ErrNonCanonical, -1},
		{"non-zero pad digit", frameOf(body(t, "0200", "0020040000800000", "000001"+"0215"+"3130303030303031")), ErrField, 22},
		{"length prefix not BCD", frameOf(body(t, "0200", "4020000000800000", "1A"+"622202123456789012"+"80"+"000001"+"3130303030303031")), ErrField, 2},
		{"empty secondary bitmap", frameOf(body(t, "0800", "8020000000800000"+"0000000000000000", netFields)), ErrNonCanonical, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeFrame(tc.frame)
			if err == nil {
				t.Fatalf("decoded: %v", m)
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Field != tc.field {
				t.Fatalf("err = %#v, want field %d", err, tc.field)
			}
			if ResponseCode(err) != ResponseFormatError {
				t.Fatalf("response code %s", ResponseCode(err))
			}
			if strings.Contains(err.Error(), "62220212345") || strings.Contains(err.Error(), "2812101") {
				t.Fatalf("error leaks card data: %v", err)
			}
			var ue *iso8583errors.UnpackError
			if errors.As(err, &ue) {
				t.Fatalf("error keeps the raw message: %v", err)
			}
		})
	}
}

func TestResponseCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "00"},
		{&MACError{Kind: ErrMACMismatch}, "A0"},
		{&MACError{Kind: ErrMACMissing}, "A0"},
		{&DecodeError{Kind: ErrField, Field: 4}, "30"},
		{io.EOF, "96"},
	} {
		if got := ResponseCode(tc.err); got != tc.want {
			t.Errorf("ResponseCode(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	m := NewMessage("0800", DefaultEnvelope(3, 0))
	_ = m.Field(FieldSTAN, "000001")
	if err := VerifyMAC(m, MACECB, key(t, testMAK)); !errors.Is(err, ErrMACMissing) {
		t.Fatalf("no MAC: %v", err)
	}
	if err := SetMAC(m, MACAlgorithm(9), key(t, testMAK)); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("unknown algorithm: %v", err)
	}
}

// The codec reads keep-alives, skips a bad frame without its raw bytes and
// goes on to the next frame; a frame cut short ends the stream.
func TestCodecStream(t *testing.T) {
	good := frameOf(body(t, "0800", netBitmap, netFields))
	bad := frameOf(body(t, "0800", netBitmap, "00A001"+"3130303030303031"))
	var stream bytes.Buffer
	stream.Write([]byte{0, 0})
	stream.Write(bad)
	stream.Write(good)
	stream.Write(good[:5])
	r := bufio.NewReader(&stream)
	var c Codec

	m, err := c.ReadMessage(r)
	if m != nil || err != nil {
		t.Fatalf("keep-alive: %v %v", m, err)
	}
	_, err = c.ReadMessage(r)
	var ue *iso8583errors.UnpackError
	if !errors.As(err, &ue) || ue.RawMessage != nil || ue.FieldID != "11" || !errors.Is(err, ErrField) {
		t.Fatalf("bad frame: %#v", err)
	}
	m, err = c.ReadMessage(r)
	if err != nil || str(t, m, FieldSTAN) != "000001" {
		t.Fatalf("good frame after bad: %v", err)
	}
	if _, err := c.ReadMessage(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v", err)
	}
	if _, err := c.ReadMessage(r); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}

	var out bytes.Buffer
	if err := c.WriteMessage(&out, m); err != nil || !bytes.Equal(out.Bytes(), good) {
		t.Fatalf("write: %v", err)
	}
	if _, err := WriteLength(&out, MaxFrame+1); !errors.Is(err, ErrFrameLength) {
		t.Fatalf("oversized length: %v", err)
	}
	n, err := ReadLength(bytes.NewReader([]byte{0x01, 0x02}))
	if err != nil || n != 258 {
		t.Fatalf("ReadLength = %d, %v", n, err)
	}
}

func TestRequestIDs(t *testing.T) {
	m := NewMessage("0200", DefaultEnvelope(3, 0))
	var g RequestIDs
	if _, err := g.GenerateRequestID(m); err == nil {
		t.Fatal("id without STAN")
	}
	_ = m.Field(FieldSTAN, "000042")
	if _, err := g.GenerateRequestID(m); err == nil {
		t.Fatal("id without terminal")
	}
	_ = m.Field(FieldTerminalID, "10000001")
	id, err := g.GenerateRequestID(m)
	if err != nil || id != "10000001/000042" {
		t.Fatalf("id %q %v", id, err)
	}
	if _, err := g.GenerateRequestID(nil); err == nil {
		t.Fatal("nil message")
	}
}

func TestBCDEncoding(t *testing.T) {
	for _, tc := range []struct {
		enc   bcdEncoding
		value string
		hex   string
	}{
		{bcdEncoding{}, "123", "0123"},
		{bcdEncoding{}, "1234", "1234"},
		{bcdEncoding{left: true}, "123", "1230"},
		{bcdEncoding{left: true}, "", ""},
		{bcdEncoding{}, "0", "00"},
	} {
		b, err := tc.enc.Encode([]byte(tc.value))
		if err != nil || strings.ToUpper(hexString(b)) != tc.hex {
			t.Errorf("Encode(%q, left=%v) = %X, %v; want %s", tc.value, tc.enc.left, b, err, tc.hex)
		}
		v, n, err := tc.enc.Decode(append(b, 0x99), len(tc.value))
		if err != nil || string(v) != tc.value || n != len(b) {
			t.Errorf("Decode(%X) = %q, %d, %v", b, v, n, err)
		}
	}
	if _, err := (bcdEncoding{}).Encode([]byte("12a")); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("non-digit encoded: %v", err)
	}
	for name, tc := range map[string]struct {
		enc bcdEncoding
		b   []byte
		n   int
	}{
		"short":            {bcdEncoding{}, []byte{0x12}, 4},
		"negative":         {bcdEncoding{}, []byte{0x12}, -1},
		"hex nibble":       {bcdEncoding{}, []byte{0x1A}, 2},
		"right pad":        {bcdEncoding{}, []byte{0x11, 0x23}, 3},
		"left pad":         {bcdEncoding{left: true}, []byte{0x12, 0x31}, 3},
		"filler F (left)":  {bcdEncoding{left: true}, []byte{0x12, 0x3F}, 3},
		"filler F (right)": {bcdEncoding{}, []byte{0xF1, 0x23}, 3},
	} {
		if _, _, err := tc.enc.Decode(tc.b, tc.n); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := bcdLL.EncodeLength(19, 20); err == nil {
		t.Error("length above maximum encoded")
	}
	if _, _, err := bcdLLL.DecodeLength(999, []byte{0x01}); err == nil {
		t.Error("short LLL prefix decoded")
	}
	if bcdLLL.Inspect() != "BCD.LLL" {
		t.Error(bcdLLL.Inspect())
	}
}

func hexString(b []byte) string { return fmt.Sprintf("%x", b) }
