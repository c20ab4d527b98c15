package cardcrypto

import (
	"bytes"
	"fmt"
)

// WorkingKeys are the session keys a terminal receives at sign-on, in clear
// once unwrapped. Data (the track data key) is optional.
type WorkingKeys struct {
	PIN  Key // PIK: enciphers PIN blocks (field 52)
	MAC  Key // MAK: computes field 64
	Data Key // TDK: enciphers track data; nil when not delivered
}

// Wipe overwrites all three keys.
func (w WorkingKeys) Wipe() {
	w.PIN.Wipe()
	w.MAC.Wipe()
	w.Data.Wipe()
}

// signOnCheckLen is the length of each check value in field 62 of a
// UnionPay POS sign-on response.
const signOnCheckLen = 4

// Field 62 lengths of a UnionPay POS sign-on (0810) response.
const (
	// SignOnKeysSingle: PIK (8) + check (4), MAK (8) + check (4).
	SignOnKeysSingle = 24
	// SignOnKeysDouble: PIK (16) + check (4), MAK (16; a single-length MAK is
	// sent as 8 bytes and 8 zero bytes) + check (4).
	SignOnKeysDouble = 40
	// SignOnKeysWithData: SignOnKeysDouble followed by TDK (16) + check (4).
	SignOnKeysWithData = 60
)

// ParseSignOnKeys unwraps the working keys carried in field 62 of a sign-on
// response under the terminal master key, verifying each 4-byte check value.
// The error says which key failed, never its value.
func ParseSignOnKeys(tmk Key, field62 []byte) (WorkingKeys, error) {
	const op = "ParseSignOnKeys"
	var w WorkingKeys
	var err error
	switch len(field62) {
	case SignOnKeysSingle:
		if w.PIN, err = unwrapPart(tmk, field62[0:12], 8, "PIN key"); err != nil {
			return WorkingKeys{}, err
		}
		if w.MAC, err = unwrapPart(tmk, field62[12:24], 8, "MAC key"); err != nil {
			w.Wipe()
			return WorkingKeys{}, err
		}
	case SignOnKeysDouble, SignOnKeysWithData:
		if w.PIN, err = unwrapPart(tmk, field62[0:20], 16, "PIN key"); err != nil {
			return WorkingKeys{}, err
		}
		mak := field62[20:40]
		if bytes.Equal(mak[8:16], make([]byte, 8)) {
			// single-length MAK padded with zeros
			w.MAC, err = unwrapPart(tmk, append(append([]byte{}, mak[:8]...), mak[16:20]...), 8, "MAC key")
		} else {
			w.MAC, err = unwrapPart(tmk, mak, 16, "MAC key")
		}
		if err != nil {
			w.Wipe()
			return WorkingKeys{}, err
		}
		if len(field62) == SignOnKeysWithData {
			if w.Data, err = unwrapPart(tmk, field62[40:60], 16, "data key"); err != nil {
				w.Wipe()
				return WorkingKeys{}, err
			}
		}
	default:
		return WorkingKeys{}, newErr(op, ErrInvalidData,
			fmt.Sprintf("field 62 is %d bytes, want %d, %d or %d", len(field62), SignOnKeysSingle, SignOnKeysDouble, SignOnKeysWithData))
	}
	return w, nil
}

func unwrapPart(tmk Key, part []byte, keyLen int, name string) (Key, error) {
	k, err := UnwrapKey(tmk, part[:keyLen], part[keyLen:keyLen+signOnCheckLen])
	if err != nil {
		if e, ok := err.(*Error); ok {
			return nil, newErr("ParseSignOnKeys", e.Kind, name+": "+e.Detail)
		}
		return nil, err
	}
	return k, nil
}

// BuildSignOnKeys is the host side of ParseSignOnKeys: it wraps the working
// keys under the terminal master key with their check values in the layout of
// field 62. The PIN key is 8 or 16 bytes; with an 8-byte PIN key the MAC key
// must be 8 bytes too and no data key may be sent.
func BuildSignOnKeys(tmk Key, w WorkingKeys) ([]byte, error) {
	const op = "BuildSignOnKeys"
	part := func(k Key, padTo int) ([]byte, error) {
		wrapped, err := WrapKey(tmk, k)
		if err != nil {
			return nil, err
		}
		cv, err := CheckValue(k, signOnCheckLen)
		if err != nil {
			return nil, err
		}
		out := append(wrapped, make([]byte, padTo-len(wrapped))...)
		return append(out, cv...), nil
	}
	var out []byte
	switch {
	case len(w.PIN) == 8:
		if len(w.MAC) != 8 || w.Data != nil {
			return nil, newErr(op, ErrInvalidKey, "with a single-length PIN key the MAC key must be 8 bytes and no data key is sent")
		}
		for _, k := range []Key{w.PIN, w.MAC} {
			p, err := part(k, 8)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
		}
	case len(w.PIN) == 16:
		if len(w.MAC) != 8 && len(w.MAC) != 16 {
			return nil, newErr(op, ErrInvalidKey, "MAC key must be 8 or 16 bytes")
		}
		keys := []Key{w.PIN, w.MAC}
		if w.Data != nil {
			if len(w.Data) != 16 {
				return nil, newErr(op, ErrInvalidKey, "data key must be 16 bytes")
			}
			keys = append(keys, w.Data)
		}
		for _, k := range keys {
			p, err := part(k, 16)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
		}
	default:
		return nil, newErr(op, ErrInvalidKey, "PIN key must be 8 or 16 bytes")
	}
	return out, nil
}
