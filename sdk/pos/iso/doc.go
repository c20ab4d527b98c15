// Package iso is the ISO 8583 message layer of the city's POS terminals, in
// the style of the China UnionPay POS terminal specification, built on
// github.com/moov-io/iso8583 and usable with
// github.com/moov-io/iso8583-connection.
//
// On the wire a frame is a 2-byte big-endian length, a 5-byte TPDU, a 6-byte
// header, then the message: BCD MTI, 8-byte binary bitmap (16 with the
// secondary bitmap) and the fields listed in FIELDS.md. Spec describes the
// message with the TPDU and header carried by field 0 together with the MTI,
// so a message keeps its routing envelope through iso8583-connection (use
// Codec as its MessageReader and MessageWriter, and RequestIDs to match
// responses by terminal id and STAN). The MAC (field 64) covers the message
// from the MTI to the end of field 63: SetMAC and VerifyMAC compute it with
// sdk/cardcrypto.
//
// Decoding never panics: truncated frames, wrong lengths, bad bitmaps and
// fields of the wrong form give a *DecodeError, whose text never contains
// card numbers, track data, PIN blocks or keys.
package iso
