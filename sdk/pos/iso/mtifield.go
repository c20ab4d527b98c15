package iso

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/moov-io/iso8583/field"
)

// MTIField is field 0 of Spec: the envelope (TPDU and header) followed by
// the BCD MTI. Its string value is the MTI alone, so iso8583.Message.MTI,
// GetMTI and iso8583-connection's response detection work unchanged, while
// the envelope travels with the message. Use EnvelopeOf and SetEnvelope.
type MTIField struct {
	spec     *field.Spec
	envelope Envelope
	mti      string
}

var _ field.Field = (*MTIField)(nil)

func newMTIField(spec *field.Spec) *MTIField { return &MTIField{spec: spec} }

// Spec returns the field spec.
func (f *MTIField) Spec() *field.Spec { return f.spec }

// SetSpec sets the field spec.
func (f *MTIField) SetSpec(spec *field.Spec) { f.spec = spec }

// SetBytes sets the MTI, keeping the envelope.
func (f *MTIField) SetBytes(b []byte) error {
	f.mti = string(b)
	return nil
}

// Bytes returns the MTI.
func (f *MTIField) Bytes() ([]byte, error) { return []byte(f.mti), nil }

// String returns the MTI.
func (f *MTIField) String() (string, error) { return f.mti, nil }

// Envelope returns the TPDU and header.
func (f *MTIField) Envelope() Envelope { return f.envelope }

// SetEnvelope sets the TPDU and header.
func (f *MTIField) SetEnvelope(e Envelope) { f.envelope = e }

func validMTI(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < 4; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Pack writes TPDU, header and the MTI in BCD.
func (f *MTIField) Pack() ([]byte, error) {
	if !validMTI(f.mti) {
		return nil, fmt.Errorf("MTI %q is not four digits: %w", f.mti, ErrInvalidValue)
	}
	out := f.envelope.Encode()
	return append(out, (f.mti[0]-'0')<<4|(f.mti[1]-'0'), (f.mti[2]-'0')<<4|(f.mti[3]-'0')), nil
}

// Unpack reads TPDU, header and MTI from the start of data.
func (f *MTIField) Unpack(data []byte) (int, error) {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return 0, err
	}
	if len(data) < EnvelopeSize+mtiSize {
		return 0, &DecodeError{Field: 0, Kind: ErrTruncated, Detail: "MTI missing"}
	}
	b := data[EnvelopeSize : EnvelopeSize+mtiSize]
	if !bcdByte(b[0]) || !bcdByte(b[1]) {
		return 0, &DecodeError{Field: 0, Kind: ErrMTI, Detail: fmt.Sprintf("% X is not BCD", b)}
	}
	f.envelope = env
	f.mti = fmt.Sprintf("%02X%02X", b[0], b[1])
	return EnvelopeSize + mtiSize, nil
}

// SetData is the deprecated form of Marshal.
func (f *MTIField) SetData(v interface{}) error { return f.Marshal(v) }

// Marshal sets the MTI from a string, *MTIField or Envelope-carrying value.
func (f *MTIField) Marshal(v interface{}) error {
	switch val := v.(type) {
	case nil:
		return nil
	case string:
		f.mti = val
	case *string:
		if val != nil {
			f.mti = *val
		}
	case *MTIField:
		if val != nil {
			f.mti, f.envelope = val.mti, val.envelope
		}
	default:
		return fmt.Errorf("MTI field: unsupported type %T", v)
	}
	return nil
}

// Unmarshal copies the MTI into a *string, reflect.Value of kind string,
// or *MTIField.
func (f *MTIField) Unmarshal(v interface{}) error {
	switch val := v.(type) {
	case *string:
		*val = f.mti
	case *MTIField:
		val.mti, val.envelope = f.mti, f.envelope
	case reflect.Value:
		if !val.CanSet() || val.Kind() != reflect.String {
			return fmt.Errorf("MTI field: cannot set %s", val.Kind())
		}
		val.SetString(f.mti)
	default:
		return fmt.Errorf("MTI field: unsupported type %T", v)
	}
	return nil
}

type mtiJSON struct {
	TPDU   string `json:"tpdu"`
	Header string `json:"header"`
	MTI    string `json:"mti"`
}

// MarshalJSON gives TPDU, header and MTI as hex and digits.
func (f *MTIField) MarshalJSON() ([]byte, error) {
	return json.Marshal(mtiJSON{TPDU: f.envelope.TPDU.String(), Header: f.envelope.Header.String(), MTI: f.mti})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *MTIField) UnmarshalJSON(b []byte) error {
	var j mtiJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	raw, err := hexBytes(j.TPDU + j.Header)
	if err != nil || len(raw) != EnvelopeSize {
		return fmt.Errorf("MTI field: bad TPDU or header: %w", ErrInvalidValue)
	}
	env, err := DecodeEnvelope(raw)
	if err != nil {
		return err
	}
	f.envelope, f.mti = env, j.MTI
	return nil
}
