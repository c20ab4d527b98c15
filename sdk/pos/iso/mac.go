package iso

import (
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// MACAlgorithm selects how field 64 is computed.
type MACAlgorithm int

// The MAC algorithms a UnionPay POS link uses.
const (
	// MACECB is the UnionPay POS "ECB" algorithm: the first 8 hex characters
	// of the result, as ASCII, fill the 8 bytes of field 64.
	MACECB MACAlgorithm = iota + 1
	// MACX919 is ANSI X9.19 (double-length key); its 8 bytes fill field 64.
	MACX919
)

func (a MACAlgorithm) String() string {
	switch a {
	case MACECB:
		return "UnionPay ECB"
	case MACX919:
		return "ANSI X9.19"
	}
	return "unknown MAC algorithm"
}

// macField is 128 when the message has secondary-bitmap fields, else 64:
// the MAC is always the last field. present is m.GetFields().
func macField(present map[int]field.Field) int {
	for id := range present {
		if id > 64 {
			return FieldMAC2
		}
	}
	return FieldMAC
}

// macData packs m, whose MAC field is set, and cuts out the MAC input:
// the message from the MTI up to, not including, the MAC field.
func macData(m *iso8583.Message) ([]byte, error) {
	packed, err := Encode(m)
	if err != nil {
		return nil, err
	}
	return packed[EnvelopeSize : len(packed)-8], nil
}

func computeMAC(alg MACAlgorithm, key cardcrypto.Key, data []byte) ([]byte, error) {
	switch alg {
	case MACECB:
		return cardcrypto.MACUnionPayECB(key, data)
	case MACX919:
		return cardcrypto.MACX919(key, data)
	default:
		return nil, ErrInvalidValue
	}
}

// SetMAC computes the MAC of m under the MAC key and sets field 64 (or 128).
func SetMAC(m *iso8583.Message, alg MACAlgorithm, key cardcrypto.Key) error {
	id := macField(m.GetFields())
	if err := m.BinaryField(id, make([]byte, 8)); err != nil {
		return err
	}
	data, err := macData(m)
	if err != nil {
		return err
	}
	mac, err := computeMAC(alg, key, data)
	if err != nil {
		return err
	}
	return m.BinaryField(id, mac)
}

// VerifyMAC recomputes the MAC of a received message and compares it with
// field 64 (or 128) in constant time. A missing or wrong MAC gives a
// *MACError; ResponseCode maps it to A0. Messages from Decode re-encode to
// exactly the bytes received, so the MAC covers what the sender sent.
func VerifyMAC(m *iso8583.Message, alg MACAlgorithm, key cardcrypto.Key) error {
	mti, _ := m.GetMTI()
	present := m.GetFields()
	id := macField(present)
	if _, ok := present[id]; !ok {
		return &MACError{Kind: ErrMACMissing, MTI: mti}
	}
	got, err := m.GetBytes(id)
	if err != nil {
		return err
	}
	data, err := macData(m)
	if err != nil {
		return err
	}
	want, err := computeMAC(alg, key, data)
	if err != nil {
		return err
	}
	if !cardcrypto.EqualMAC(want, got) {
		return &MACError{Kind: ErrMACMismatch, MTI: mti}
	}
	return nil
}
