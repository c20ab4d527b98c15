package iso

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Sizes of the parts of a frame before the MTI.
const (
	LengthSize   = 2 // big-endian message length
	TPDUSize     = 5
	HeaderSize   = 6
	EnvelopeSize = TPDUSize + HeaderSize
	mtiSize      = 2 // four BCD digits
)

// TPDUID is the first byte of every TPDU on a UnionPay POS link.
const TPDUID = 0x60

// TPDU is the transport protocol data unit: ID 0x60, then the destination
// and source addresses (network access points, conventionally written as four
// hex digits, e.g. 60 0003 0000 from a terminal to its host).
type TPDU struct {
	ID          byte
	Destination uint16
	Source      uint16
}

// NewTPDU returns a TPDU with ID 0x60.
func NewTPDU(destination, source uint16) TPDU {
	return TPDU{ID: TPDUID, Destination: destination, Source: source}
}

// Reply swaps destination and source, as a host does when answering.
func (t TPDU) Reply() TPDU { return TPDU{ID: t.ID, Destination: t.Source, Source: t.Destination} }

// Encode returns the 5 bytes of the TPDU.
func (t TPDU) Encode() []byte {
	return []byte{t.ID, byte(t.Destination >> 8), byte(t.Destination), byte(t.Source >> 8), byte(t.Source)}
}

// String gives the TPDU as 10 hex digits.
func (t TPDU) String() string { return strings.ToUpper(hex.EncodeToString(t.Encode())) }

// DecodeTPDU parses the first 5 bytes of b.
func DecodeTPDU(b []byte) (TPDU, error) {
	if len(b) < TPDUSize {
		return TPDU{}, &DecodeError{Field: 0, Kind: ErrTruncated, Detail: fmt.Sprintf("TPDU needs %d bytes, have %d", TPDUSize, len(b))}
	}
	if b[0] != TPDUID {
		return TPDU{}, &DecodeError{Field: 0, Kind: ErrTPDU, Detail: fmt.Sprintf("ID is %02X, want 60", b[0])}
	}
	return TPDU{ID: b[0], Destination: uint16(b[1])<<8 | uint16(b[2]), Source: uint16(b[3])<<8 | uint16(b[4])}, nil
}

// Header processing requirements (the low half of the header's third byte):
// what the host asks the terminal to do after this exchange.
const (
	ProcessNone               = 0 // no further processing
	ProcessDownloadParameters = 1 // download terminal parameters
	ProcessUploadStatus       = 2 // upload terminal status
	ProcessSignOnAgain        = 3 // sign on again (new working keys)
	ProcessUpdatePublicKeys   = 4 // download IC card public keys
	ProcessUpdateICParameters = 5 // download IC card parameters
	ProcessDownloadTMS        = 6 // download TMS parameters
)

// Header is the 6-byte application header of a UnionPay POS message:
// application type (2 BCD digits, 60 for POS), software version (2 BCD
// digits), terminal status (1 digit: 0 normal, 1 test), processing
// requirement (1 digit, see Process*), and 3 reserved bytes.
type Header struct {
	AppType               byte // BCD, e.g. 0x60
	Version               byte // BCD, e.g. 0x31 for 3.1
	TerminalStatus        byte // 0 to 9
	ProcessingRequirement byte // 0 to 9
	Reserved              [3]byte
}

// DefaultHeader is a POS application header, version 3.1, normal status,
// no processing requirement.
func DefaultHeader() Header { return Header{AppType: 0x60, Version: 0x31} }

// Encode returns the 6 bytes of the header.
func (h Header) Encode() []byte {
	return []byte{h.AppType, h.Version, h.TerminalStatus<<4 | h.ProcessingRequirement&0x0F, h.Reserved[0], h.Reserved[1], h.Reserved[2]}
}

// String gives the header as 12 hex digits.
func (h Header) String() string { return strings.ToUpper(hex.EncodeToString(h.Encode())) }

func bcdByte(b byte) bool { return b>>4 <= 9 && b&0x0F <= 9 }

// DecodeHeader parses the first 6 bytes of b. The application type,
// version, terminal status and processing requirement must be decimal digits.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, &DecodeError{Field: 0, Kind: ErrTruncated, Detail: fmt.Sprintf("header needs %d bytes, have %d", HeaderSize, len(b))}
	}
	if !bcdByte(b[0]) || !bcdByte(b[1]) || !bcdByte(b[2]) {
		return Header{}, &DecodeError{Field: 0, Kind: ErrHeader, Detail: fmt.Sprintf("% X is not BCD", b[:3])}
	}
	return Header{AppType: b[0], Version: b[1], TerminalStatus: b[2] >> 4, ProcessingRequirement: b[2] & 0x0F, Reserved: [3]byte{b[3], b[4], b[5]}}, nil
}

// Envelope is what precedes the MTI in a frame: TPDU and header.
type Envelope struct {
	TPDU   TPDU
	Header Header
}

// DefaultEnvelope addresses a host at NII destination from a terminal at
// source, with DefaultHeader.
func DefaultEnvelope(destination, source uint16) Envelope {
	return Envelope{TPDU: NewTPDU(destination, source), Header: DefaultHeader()}
}

// Reply is the envelope of an answer: addresses swapped, header kept.
func (e Envelope) Reply() Envelope { return Envelope{TPDU: e.TPDU.Reply(), Header: e.Header} }

// Encode returns the 11 bytes of TPDU and header.
func (e Envelope) Encode() []byte { return append(e.TPDU.Encode(), e.Header.Encode()...) }

// DecodeEnvelope parses TPDU and header from the first 11 bytes of b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	t, err := DecodeTPDU(b)
	if err != nil {
		return Envelope{}, err
	}
	h, err := DecodeHeader(b[TPDUSize:])
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{TPDU: t, Header: h}, nil
}
