package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583"
	iso8583errors "github.com/moov-io/iso8583/errors"
)

// MaxFrame is the largest message a 2-byte length can describe.
const MaxFrame = 0xFFFF

// Encode packs a message of Spec: TPDU, header, MTI, bitmap and fields,
// without the length prefix.
func Encode(m *iso8583.Message) ([]byte, error) {
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("iso: encode: %w", safePackError(err))
	}
	return b, nil
}

// safePackError keeps the library's message for a pack error; packing
// errors concern lengths and forms of values we built, not their content.
func safePackError(err error) error {
	var pe *iso8583errors.PackError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Decode unpacks a message of Spec from b (TPDU onwards, no length prefix).
// It accepts only canonical encodings: the message must re-encode to exactly
// b, so no bytes may trail the last field and pad digits must be zero.
func Decode(b []byte) (*iso8583.Message, error) {
	if len(b) < EnvelopeSize+mtiSize+8 {
		return nil, &DecodeError{Field: -1, Kind: ErrTruncated, Detail: fmt.Sprintf("%d bytes is shorter than envelope, MTI and bitmap", len(b))}
	}
	m := iso8583.NewMessage(Spec)
	if err := m.Unpack(b); err != nil {
		return nil, decodeError(err)
	}
	again, err := m.Pack()
	if err != nil {
		return nil, &DecodeError{Field: -1, Kind: ErrNonCanonical, Detail: "does not re-encode"}
	}
	if !bytes.Equal(again, b) {
		detail := "does not re-encode to the bytes received (pad digits or an empty secondary bitmap)"
		if len(again) < len(b) {
			detail = fmt.Sprintf("%d bytes after the last field", len(b)-len(again))
		}
		return nil, &DecodeError{Field: -1, Kind: ErrNonCanonical, Detail: detail}
	}
	return m, nil
}

// decodeError turns the library's unpack error into a DecodeError that
// drops the raw message and, for sensitive fields, the library's text.
func decodeError(err error) error {
	var de *DecodeError
	if errors.As(err, &de) {
		return de
	}
	var ue *iso8583errors.UnpackError
	fieldID := -1
	if errors.As(err, &ue) {
		if n, convErr := strconv.Atoi(ue.FieldID); convErr == nil {
			fieldID = n
		}
	}
	text := err.Error()
	switch {
	case fieldID == 1:
		return &DecodeError{Field: 1, Kind: ErrBitmap, Detail: libText(text)}
	case strings.Contains(text, "no specification found"):
		return &DecodeError{Field: 1, Kind: ErrBitmap, Detail: fmt.Sprintf("names field %d, which is not defined", fieldID)}
	case fieldID > 1 && sensitiveFields[fieldID]:
		return &DecodeError{Field: fieldID, Kind: ErrField, Detail: "malformed (content withheld)"}
	case fieldID > 1:
		return &DecodeError{Field: fieldID, Kind: ErrField, Detail: libText(text)}
	default:
		return &DecodeError{Field: fieldID, Kind: ErrField, Detail: "malformed"}
	}
}

// libText keeps the library's explanation, which names lengths and
// encodings but not field content.
func libText(s string) string {
	if i := strings.Index(s, "): "); i >= 0 {
		return s[i+3:]
	}
	return s
}

// EncodeFrame packs a message with its 2-byte big-endian length prefix.
func EncodeFrame(m *iso8583.Message) ([]byte, error) {
	b, err := Encode(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFrame {
		return nil, &DecodeError{Field: -1, Kind: ErrFrameLength, Detail: fmt.Sprintf("%d bytes exceed %d", len(b), MaxFrame)}
	}
	out := make([]byte, LengthSize, LengthSize+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	return append(out, b...), nil
}

// DecodeFrame decodes one whole frame: the length prefix must match the
// bytes that follow it exactly.
func DecodeFrame(frame []byte) (*iso8583.Message, error) {
	if len(frame) < LengthSize {
		return nil, &DecodeError{Field: -1, Kind: ErrTruncated, Detail: "no length prefix"}
	}
	n := int(binary.BigEndian.Uint16(frame))
	if n == 0 {
		return nil, &DecodeError{Field: -1, Kind: ErrFrameLength, Detail: "length is zero"}
	}
	if n != len(frame)-LengthSize {
		return nil, &DecodeError{Field: -1, Kind: ErrFrameLength, Detail: fmt.Sprintf("prefix says %d bytes, frame has %d", n, len(frame)-LengthSize)}
	}
	return Decode(frame[LengthSize:])
}

// ReadLength reads the 2-byte big-endian length prefix; it is an
// iso8583-connection MessageLengthReader.
func ReadLength(r io.Reader) (int, error) {
	var b [LengthSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(b[:])), nil
}

// WriteLength writes the 2-byte big-endian length prefix; it is an
// iso8583-connection MessageLengthWriter.
func WriteLength(w io.Writer, length int) (int, error) {
	if length < 0 || length > MaxFrame {
		return 0, &DecodeError{Field: -1, Kind: ErrFrameLength, Detail: fmt.Sprintf("%d bytes do not fit a 2-byte length", length)}
	}
	var b [LengthSize]byte
	binary.BigEndian.PutUint16(b[:], uint16(length))
	return w.Write(b[:])
}

// Codec reads and writes whole frames for iso8583-connection (set it with
// connection.SetMessageReader and connection.SetMessageWriter). Unlike the
// connection's default reader it decodes with Decode, so non-canonical
// messages are refused and no decode error carries the raw message. A
// zero-length frame is a keep-alive: ReadMessage returns no message and no
// error, which the connection skips. A message that does not decode is
// returned as an *iso8583errors.UnpackError (wrapping a *DecodeError, with
// no raw bytes), after which the connection keeps reading: the frame was
// consumed whole.
type Codec struct{}

// ReadMessage reads one frame.
func (Codec) ReadMessage(r io.Reader) (*iso8583.Message, error) {
	n, err := ReadLength(r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("iso: reading %d-byte frame: %w", n, err)
	}
	m, err := Decode(body)
	if err != nil {
		var de *DecodeError
		fieldID := "-1"
		if errors.As(err, &de) {
			fieldID = strconv.Itoa(de.Field)
		}
		return nil, &iso8583errors.UnpackError{Err: err, FieldID: fieldID}
	}
	return m, nil
}

// WriteMessage writes one frame in a single Write.
func (Codec) WriteMessage(w io.Writer, m *iso8583.Message) error {
	frame, err := EncodeFrame(m)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// RequestIDs matches responses to requests by terminal id (field 41) and
// STAN (field 11): STANs are only unique per terminal. It is an
// iso8583-connection RequestIDGenerator.
type RequestIDs struct{}

// GenerateRequestID returns "terminal/STAN".
func (RequestIDs) GenerateRequestID(m *iso8583.Message) (string, error) {
	if m == nil {
		return "", fmt.Errorf("iso: request id: no message")
	}
	present := m.GetFields()
	stanField, ok1 := present[FieldSTAN]
	tidField, ok2 := present[FieldTerminalID]
	var stan, tid string
	if ok1 {
		stan, _ = stanField.String()
	}
	if ok2 {
		tid, _ = tidField.String()
	}
	if stan == "" {
		return "", fmt.Errorf("iso: request id: STAN (field 11) missing")
	}
	if tid == "" {
		return "", fmt.Errorf("iso: request id: terminal id (field 41) missing")
	}
	return tid + "/" + stan, nil
}

// isSet reports whether field id was set or decoded.
func isSet(m *iso8583.Message, id int) bool {
	_, ok := m.GetFields()[id]
	return ok
}
