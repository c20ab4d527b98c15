package iso

import (
	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
)

// Field numbers used by the POS flows.
const (
	FieldPAN             = 2
	FieldProcessingCode  = 3
	FieldAmount          = 4
	FieldSTAN            = 11
	FieldLocalTime       = 12
	FieldLocalDate       = 13
	FieldExpiry          = 14
	FieldSettlementDate  = 15
	FieldEntryMode       = 22
	FieldCardSequence    = 23
	FieldConditionCode   = 25
	FieldPINCaptureCode  = 26
	FieldAcquirerID      = 32
	FieldTrack2          = 35
	FieldTrack3          = 36
	FieldRRN             = 37
	FieldAuthCode        = 38
	FieldResponseCode    = 39
	FieldTerminalID      = 41
	FieldMerchantID      = 42
	FieldAdditionalResp  = 44
	FieldAdditionalData  = 48
	FieldCurrency        = 49
	FieldPINBlock        = 52
	FieldSecurityControl = 53
	FieldBalance         = 54
	FieldICC             = 55
	FieldEWallet         = 58
	FieldReserved60      = 60
	FieldOriginal        = 61
	FieldReserved62      = 62
	FieldReserved63      = 63
	FieldMAC             = 64
	FieldReceivingInst   = 100
	FieldMAC2            = 128
)

func bcd(n int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: n, Description: desc, Enc: bcdRight, Pref: prefix.BCD.Fixed})
}

func lbcd(n int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: n, Description: desc, Enc: bcdLeft, Pref: prefix.BCD.Fixed})
}

func lbcdVar(pref prefix.Prefixer, max int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: max, Description: desc, Enc: bcdLeft, Pref: pref})
}

func track(pref prefix.Prefixer, max int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: max, Description: desc, Enc: trackEncoding{}, Pref: pref})
}

func ascii(n int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: n, Description: desc, Enc: encoding.ASCII, Pref: prefix.ASCII.Fixed})
}

func asciiVar(pref prefix.Prefixer, max int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: max, Description: desc, Enc: encoding.ASCII, Pref: pref})
}

func bin(n int, desc string) *field.Binary {
	return field.NewBinary(&field.Spec{Length: n, Description: desc, Enc: encoding.Binary, Pref: prefix.Binary.Fixed})
}

func binVar(max int, desc string) *field.Binary {
	return field.NewBinary(&field.Spec{Length: max, Description: desc, Enc: encoding.Binary, Pref: bcdLLL})
}

// Spec is the UnionPay-POS-style message spec. Field 0 is an MTIField
// (TPDU, header, BCD MTI); lengths of variable fields are BCD (one byte for
// LLVAR, two for LLLVAR) and count digits for numeric and track fields,
// bytes for binary ones and characters for text. Numeric fields keep their
// leading zeros: every field is a string of exactly what is on the wire.
// FIELDS.md documents each field.
var Spec = &iso8583.MessageSpec{
	Name: "CityCard POS (UnionPay POS style)",
	Fields: map[int]field.Field{
		0: newMTIField(&field.Spec{Length: 4, Description: "TPDU, header and message type identifier"}),
		1: field.NewBitmap(&field.Spec{Length: 8, Description: "Bitmap", Enc: encoding.Binary, Pref: prefix.Binary.Fixed}),

		FieldPAN:             lbcdVar(bcdLL, 19, "Primary account number"),
		FieldProcessingCode:  bcd(6, "Processing code"),
		FieldAmount:          bcd(12, "Amount, transaction"),
		FieldSTAN:            bcd(6, "System trace audit number"),
		FieldLocalTime:       bcd(6, "Time, local transaction (hhmmss)"),
		FieldLocalDate:       bcd(4, "Date, local transaction (MMDD)"),
		FieldExpiry:          bcd(4, "Date, expiration (YYMM)"),
		FieldSettlementDate:  bcd(4, "Date, settlement (MMDD)"),
		FieldEntryMode:       lbcd(3, "Point of service entry mode"),
		FieldCardSequence:    bcd(3, "Card sequence number"),
		FieldConditionCode:   bcd(2, "Point of service condition code"),
		FieldPINCaptureCode:  bcd(2, "Point of service PIN capture code"),
		FieldAcquirerID:      lbcdVar(bcdLL, 11, "Acquiring institution identification code"),
		FieldTrack2:          track(bcdLL, 37, "Track 2 data"),
		FieldTrack3:          track(bcdLLL, 104, "Track 3 data"),
		FieldRRN:             ascii(12, "Retrieval reference number"),
		FieldAuthCode:        ascii(6, "Authorization identification response"),
		FieldResponseCode:    ascii(2, "Response code"),
		FieldTerminalID:      ascii(8, "Card acceptor terminal identification"),
		FieldMerchantID:      ascii(15, "Card acceptor identification code"),
		FieldAdditionalResp:  asciiVar(bcdLL, 25, "Additional response data"),
		FieldAdditionalData:  lbcdVar(bcdLLL, 322, "Additional data, private"),
		FieldCurrency:        ascii(3, "Currency code, transaction"),
		FieldPINBlock:        bin(8, "PIN data"),
		FieldSecurityControl: bcd(16, "Security related control information"),
		FieldBalance:         asciiVar(bcdLLL, 20, "Balance amount"),
		FieldICC:             binVar(255, "ICC system related data"),
		FieldEWallet:         asciiVar(bcdLLL, 100, "PBOC electronic wallet data"),
		FieldReserved60:      lbcdVar(bcdLLL, 100, "Reserved private: message type code, batch number, network management code"),
		FieldOriginal:        lbcdVar(bcdLLL, 29, "Original message: batch, STAN, date"),
		FieldReserved62:      binVar(512, "Reserved private: working keys, terminal data"),
		FieldReserved63:      asciiVar(bcdLLL, 163, "Reserved private: card organisation, operator"),
		FieldMAC:             bin(8, "Message authentication code"),
		FieldReceivingInst:   lbcdVar(bcdLL, 11, "Receiving institution identification code"),
		FieldMAC2:            bin(8, "Message authentication code (secondary bitmap)"),
	},
}

// NewMessage returns an empty message of Spec with the MTI and envelope set.
func NewMessage(mti string, env Envelope) *iso8583.Message {
	m := iso8583.NewMessage(Spec)
	m.MTI(mti)
	SetEnvelope(m, env)
	return m
}

// EnvelopeOf returns the TPDU and header a message carries (zero for a
// message not of Spec).
func EnvelopeOf(m *iso8583.Message) Envelope {
	if f, ok := m.GetField(0).(*MTIField); ok {
		return f.Envelope()
	}
	return Envelope{}
}

// SetEnvelope sets the TPDU and header of a message of Spec.
func SetEnvelope(m *iso8583.Message, env Envelope) {
	if f, ok := m.GetField(0).(*MTIField); ok {
		f.SetEnvelope(env)
	}
}
