package iso

import (
	"fmt"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
)

// maxAmount is the largest amount field 4 holds: 12 digits of minor units.
const maxAmount = 999_999_999_999

// Terminal identifies the terminal and merchant a message is from.
type Terminal struct {
	Envelope   Envelope
	TerminalID string // field 41, 8 characters
	MerchantID string // field 42, 15 characters
}

// Card is how the card was presented. Set PAN or Track2 (or both).
type Card struct {
	PAN          cardcrypto.PAN // field 2
	Track2       string         // field 35, clear track 2 equivalent data
	Expiry       string         // field 14, YYMM, optional
	EntryMode    string         // field 22, see Entry*
	CardSequence string         // field 23, optional
	PINBlock     []byte         // field 52, enciphered under the PIN key
	TripleDESPIN bool           // field 53: the PIN key is double length
	ICC          []byte         // field 55, optional
}

// Request holds what a financial request carries.
type Request struct {
	Terminal
	STAN     string    // field 11, 6 digits
	Batch    string    // field 60.2, 6 digits
	At       time.Time // fields 12 and 13 (terminal local time)
	Card     Card
	Amount   int64    // field 4, minor units
	Currency string   // field 49, ISO 4217 numeric, e.g. "156"
	Original Original // void, refund, completion: the original transaction
}

// set collects the first error of a run of field assignments.
type set struct {
	m   *iso8583.Message
	err error
}

func (s *set) str(id int, v string) {
	if s.err == nil && v != "" {
		s.err = s.m.Field(id, v)
	}
}

func (s *set) bin(id int, v []byte) {
	if s.err == nil && v != nil {
		s.err = s.m.BinaryField(id, v)
	}
}

func (s *set) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *set) terminal(t Terminal) {
	if len(t.TerminalID) != 8 {
		s.fail(fmt.Errorf("terminal id must be 8 characters: %w", ErrInvalidValue))
	}
	if len(t.MerchantID) != 15 {
		s.fail(fmt.Errorf("merchant id must be 15 characters: %w", ErrInvalidValue))
	}
	s.str(FieldTerminalID, t.TerminalID)
	s.str(FieldMerchantID, t.MerchantID)
}

func (s *set) stan(stan string) {
	if err := digits(stan, 6, "STAN"); err != nil {
		s.fail(err)
	}
	s.str(FieldSTAN, stan)
}

func (s *set) at(t time.Time) {
	if t.IsZero() {
		return
	}
	s.str(FieldLocalTime, t.Format("150405"))
	s.str(FieldLocalDate, t.Format("0102"))
}

func (s *set) amount(a int64, currency string) {
	if a < 0 || a > maxAmount {
		s.fail(fmt.Errorf("amount %d out of range 0 to %d minor units: %w", a, int64(maxAmount), ErrInvalidValue))
		return
	}
	if err := digits(currency, 3, "currency code"); err != nil {
		s.fail(err)
	}
	s.str(FieldAmount, fmt.Sprintf("%012d", a))
	s.str(FieldCurrency, currency)
}

func (s *set) card(c Card) {
	if c.PAN.IsZero() && c.Track2 == "" {
		s.fail(fmt.Errorf("card number or track 2 required: %w", ErrInvalidValue))
	}
	s.str(FieldPAN, c.PAN.Reveal())
	s.str(FieldExpiry, c.Expiry)
	if c.EntryMode == "" {
		s.fail(fmt.Errorf("entry mode (field 22) required: %w", ErrInvalidValue))
	}
	s.str(FieldEntryMode, c.EntryMode)
	s.str(FieldCardSequence, c.CardSequence)
	s.str(FieldTrack2, c.Track2)
	if c.PINBlock != nil {
		if len(c.PINBlock) != 8 {
			s.fail(fmt.Errorf("PIN block must be 8 bytes: %w", ErrInvalidValue))
		}
		s.str(FieldPINCaptureCode, "12") // up to 12 PIN digits
		s.bin(FieldPINBlock, c.PINBlock)
		// 53: PIN format 1 (ISO 9564 format 0, with PAN), algorithm 0 (DES) or 6 (3DES).
		alg := "0"
		if c.TripleDESPIN {
			alg = "6"
		}
		s.str(FieldSecurityControl, "1"+alg+strings.Repeat("0", 14))
	}
	s.bin(FieldICC, c.ICC)
}

func (s *set) field60(f Field60) {
	v, err := f.Encode()
	if err != nil {
		s.fail(err)
		return
	}
	s.str(FieldReserved60, v)
}

func (s *set) original(o Original, needRRN, needAuth bool) {
	v, err := o.Field61()
	if err != nil {
		s.fail(err)
		return
	}
	if needRRN && len(o.RRN) != 12 {
		s.fail(fmt.Errorf("original RRN must be 12 characters: %w", ErrInvalidValue))
	}
	if needAuth && len(o.AuthCode) != 6 {
		s.fail(fmt.Errorf("original authorisation code must be 6 characters: %w", ErrInvalidValue))
	}
	s.str(FieldRRN, o.RRN)
	s.str(FieldAuthCode, o.AuthCode)
	s.str(FieldOriginal, v)
}

func (s *set) done() (*iso8583.Message, error) {
	if s.err != nil {
		return nil, fmt.Errorf("iso: build: %w", s.err)
	}
	// Pack once so a bad length or form is reported here, not on the wire.
	if _, err := Encode(s.m); err != nil {
		return nil, fmt.Errorf("iso: build: %w", err)
	}
	return s.m, nil
}

func financial(mti, proc, cond, msgType string, r Request) *set {
	s := &set{m: NewMessage(mti, r.Envelope)}
	s.str(FieldProcessingCode, proc)
	s.stan(r.STAN)
	s.at(r.At)
	s.card(r.Card)
	s.str(FieldConditionCode, cond)
	s.terminal(r.Terminal)
	s.field60(Field60{MessageType: msgType, Batch: r.Batch})
	return s
}

// NewPurchase builds a 0200 purchase (consumption) request.
func NewPurchase(r Request) (*iso8583.Message, error) {
	s := financial("0200", ProcPurchase, CondNormal, TypePurchase, r)
	s.amount(r.Amount, r.Currency)
	return s.done()
}

// NewVoid builds a 0200 void of a purchase made in the current batch.
func NewVoid(r Request) (*iso8583.Message, error) {
	s := financial("0200", ProcVoid, CondNormal, TypeVoid, r)
	s.amount(r.Amount, r.Currency)
	s.original(r.Original, true, false)
	return s.done()
}

// NewRefund builds a 0220 refund (return of goods) of an earlier purchase.
func NewRefund(r Request) (*iso8583.Message, error) {
	s := financial("0220", ProcVoid, CondNormal, TypeRefund, r)
	s.amount(r.Amount, r.Currency)
	s.original(r.Original, true, false)
	return s.done()
}

// NewBalanceInquiry builds a 0200 balance inquiry.
func NewBalanceInquiry(r Request) (*iso8583.Message, error) {
	s := financial("0200", ProcBalance, CondNormal, TypeBalance, r)
	if r.Currency != "" {
		if err := digits(r.Currency, 3, "currency code"); err != nil {
			s.fail(err)
		}
		s.str(FieldCurrency, r.Currency)
	}
	return s.done()
}

// NewPreAuth builds a 0100 pre-authorisation (a hold on the account).
func NewPreAuth(r Request) (*iso8583.Message, error) {
	s := financial("0100", ProcPreAuth, CondPreAuth, TypePreAuth, r)
	s.amount(r.Amount, r.Currency)
	return s.done()
}

// NewCompletion builds a 0200 pre-authorisation completion; the original
// carries the pre-authorisation's authorisation code and date.
func NewCompletion(r Request) (*iso8583.Message, error) {
	s := financial("0200", ProcPurchase, CondPreAuth, TypeCompletion, r)
	s.amount(r.Amount, r.Currency)
	s.original(r.Original, false, true)
	return s.done()
}

// NewPreAuthVoid builds a 0100 pre-authorisation cancellation: the hold is
// released; the original carries the pre-authorisation's authorisation
// code and date, and the amount is the pre-authorisation's.
func NewPreAuthVoid(r Request) (*iso8583.Message, error) {
	s := financial("0100", ProcVoid, CondPreAuth, TypePreAuthVoid, r)
	s.amount(r.Amount, r.Currency)
	s.original(r.Original, false, true)
	return s.done()
}

// reversalFields are copied from the original request into its reversal:
// never the track data or PIN block.
var reversalFields = []int{FieldPAN, FieldProcessingCode, FieldAmount, FieldSTAN, FieldExpiry, FieldEntryMode,
	FieldCardSequence, FieldConditionCode, FieldAuthCode, FieldTerminalID, FieldMerchantID, FieldCurrency,
	FieldICC, FieldReserved60, FieldOriginal}

// Reversal reason codes (field 39 of a 0400).
const (
	ReverseTimeout  = "98" // no response from the host
	ReverseMACError = "A0" // the response's MAC failed
	ReverseOther    = "06"
)

// NewReversal builds the 0400 reversal a terminal sends for a request that
// timed out (or whose answer it could not accept), copying the original's
// identifying fields; reason goes to field 39.
func NewReversal(orig *iso8583.Message, reason string) (*iso8583.Message, error) {
	mti, _ := orig.GetMTI()
	if mti != "0200" && mti != "0100" && mti != "0220" {
		return nil, fmt.Errorf("iso: build: cannot reverse a %s: %w", mti, ErrInvalidValue)
	}
	if len(reason) != 2 {
		return nil, fmt.Errorf("iso: build: reversal reason must be 2 characters: %w", ErrInvalidValue)
	}
	s := &set{m: NewMessage("0400", EnvelopeOf(orig))}
	if err := copyFields(s.m, orig, reversalFields); err != nil {
		return nil, fmt.Errorf("iso: build: %w", err)
	}
	s.str(FieldResponseCode, reason)
	return s.done()
}

func copyFields(dst, src *iso8583.Message, ids []int) error {
	present := src.GetFields()
	for _, id := range ids {
		if _, ok := present[id]; !ok {
			continue
		}
		b, err := src.GetBytes(id)
		if err != nil {
			return err
		}
		if err := dst.BinaryField(id, b); err != nil {
			return err
		}
	}
	return nil
}

// KeyScheme is the kind of working keys a terminal asks for at sign-on.
type KeyScheme string

// Key schemes, as field 60.3 of a sign-on.
const (
	KeysSingle   KeyScheme = NetSignOnSingle
	KeysDouble   KeyScheme = NetSignOnDouble
	KeysWithData KeyScheme = NetSignOnWithData
)

// NewSignOn builds a 0800 sign-on: the terminal asks for new working keys
// and a batch number. operator is the 3-character operator code (field 63).
func NewSignOn(t Terminal, stan, batch string, at time.Time, scheme KeyScheme, operator string) (*iso8583.Message, error) {
	s := &set{m: NewMessage("0800", t.Envelope)}
	s.stan(stan)
	s.at(at)
	s.terminal(t)
	s.field60(Field60{MessageType: TypeManagement, Batch: batch, NetworkCode: string(scheme)})
	if len(operator) != 3 {
		s.fail(fmt.Errorf("operator code must be 3 characters: %w", ErrInvalidValue))
	}
	s.str(FieldReserved63, operator)
	return s.done()
}

// NewSignOnResponse answers a sign-on with the working keys (field 62, see
// cardcrypto.BuildSignOnKeys) and the batch number the terminal is to use.
func NewSignOnResponse(req *iso8583.Message, rc string, batch string, at time.Time, keys []byte) (*iso8583.Message, error) {
	resp, err := NewResponse(req, rc)
	if err != nil {
		return nil, err
	}
	s := &set{m: resp}
	s.at(at)
	if f60, err := req.GetString(FieldReserved60); err == nil && f60 != "" {
		p, err := ParseField60(f60)
		if err != nil {
			return nil, err
		}
		p.Batch = batch
		s.field60(p)
	}
	s.bin(FieldReserved62, keys)
	return s.done()
}

// NewSettlement builds a 0500 batch settlement with the terminal's totals.
func NewSettlement(t Terminal, stan, batch string, at time.Time, totals Totals, operator string) (*iso8583.Message, error) {
	s := &set{m: NewMessage("0500", t.Envelope)}
	s.stan(stan)
	s.at(at)
	s.terminal(t)
	f48, err := totals.Field48()
	if err != nil {
		s.fail(err)
	}
	s.str(FieldAdditionalData, f48)
	cur := totals.Currency
	if cur == "" {
		cur = "156"
	}
	if err := digits(cur, 3, "currency code"); err != nil {
		s.fail(err)
	}
	s.str(FieldCurrency, cur)
	s.field60(Field60{MessageType: TypeManagement, Batch: batch, NetworkCode: NetSettlement})
	if operator != "" {
		s.str(FieldReserved63, operator)
	}
	return s.done()
}

// NewBatchUpload builds a 0320 batch upload carrying up to MaxBatchEntries
// transactions; last marks the end of the upload.
func NewBatchUpload(t Terminal, stan, batch string, entries []BatchEntry, last bool) (*iso8583.Message, error) {
	s := &set{m: NewMessage("0320", t.Envelope)}
	s.stan(stan)
	s.terminal(t)
	f48, err := EncodeBatch(entries)
	if err != nil {
		s.fail(err)
	}
	s.str(FieldAdditionalData, f48)
	code := NetSettlement
	if last {
		code = NetBatchUploadDone
	}
	s.field60(Field60{MessageType: TypeManagement, Batch: batch, NetworkCode: code})
	return s.done()
}

// echoFields are copied from a request into its response.
var echoFields = []int{FieldPAN, FieldProcessingCode, FieldAmount, FieldSTAN, FieldExpiry, FieldEntryMode,
	FieldCardSequence, FieldConditionCode, FieldAcquirerID, FieldTerminalID, FieldMerchantID,
	FieldAdditionalData, FieldCurrency, FieldReserved60, FieldOriginal, FieldReserved63}

// ResponseMTI returns the MTI answering mti (0200 -> 0210, 0220 -> 0230).
func ResponseMTI(mti string) (string, error) {
	if !validMTI(mti) || (mti[2] != '0' && mti[2] != '2') {
		return "", fmt.Errorf("iso: %q is not a request MTI: %w", mti, ErrInvalidValue)
	}
	return mti[:2] + string(mti[2]+1) + mti[3:], nil
}

// NewResponse builds the response to req with response code rc (field 39):
// MTI plus 10, envelope with TPDU addresses swapped, identifying fields
// echoed. Callers add host fields (37, 38, 54, 62, ...) and the MAC.
func NewResponse(req *iso8583.Message, rc string) (*iso8583.Message, error) {
	mti, _ := req.GetMTI()
	rmti, err := ResponseMTI(mti)
	if err != nil {
		return nil, err
	}
	if len(rc) != 2 {
		return nil, fmt.Errorf("iso: response code must be 2 characters: %w", ErrInvalidValue)
	}
	resp := NewMessage(rmti, EnvelopeOf(req).Reply())
	if err := copyFields(resp, req, echoFields); err != nil {
		return nil, fmt.Errorf("iso: build response: %w", err)
	}
	if err := resp.Field(FieldResponseCode, rc); err != nil {
		return nil, err
	}
	return resp, nil
}
