package iso

import (
	"fmt"
	"strings"
)

// Message type codes (field 60.1) of the UnionPay POS specification.
const (
	TypeManagement     = "00"
	TypeBalance        = "01"
	TypePreAuth        = "10"
	TypePreAuthVoid    = "11"
	TypeCompletion     = "20"
	TypeCompletionVoid = "21"
	TypePurchase       = "22"
	TypeVoid           = "23"
	TypeRefund         = "25"
)

// Network management information codes (field 60.3).
const (
	NetSignOnSingle    = "001" // sign-on, single-length keys
	NetSignOff         = "002"
	NetSignOnDouble    = "003" // sign-on, double-length keys
	NetSignOnWithData  = "004" // sign-on, double-length keys and a track data key
	NetSettlement      = "201" // batch settlement; batch upload of magnetic-stripe transactions
	NetBatchUploadDone = "202" // end of batch upload
	NetEcho            = "301"
)

// Processing codes (field 3).
const (
	ProcPurchase = "000000" // purchase, pre-authorisation completion
	ProcVoid     = "200000" // void, refund, pre-authorisation void
	ProcBalance  = "310000"
	ProcPreAuth  = "030000"
)

// POS condition codes (field 25).
const (
	CondNormal  = "00"
	CondPreAuth = "06"
)

// POS entry modes (field 22): how the card was read and whether a PIN was
// entered.
const (
	EntrySwipePIN       = "021"
	EntrySwipeNoPIN     = "022"
	EntryChipPIN        = "051"
	EntryChipNoPIN      = "052"
	EntryContactlessPIN = "071"
	EntryManualNoPIN    = "012"
)

func digits(s string, n int, what string) error {
	if len(s) != n || strings.Trim(s, "0123456789") != "" {
		return fmt.Errorf("%s must be %d digits: %w", what, n, ErrInvalidValue)
	}
	return nil
}

// Field60 is the reserved private field 60: message type code, batch
// number, network management information code, then any further digits
// (terminal read capability, IC condition code, ...).
type Field60 struct {
	MessageType string // 60.1, 2 digits
	Batch       string // 60.2, 6 digits
	NetworkCode string // 60.3, 3 digits, may be empty
	Extra       string // 60.4 onwards, digits
}

// Encode validates and joins the subfields.
func (f Field60) Encode() (string, error) {
	if err := digits(f.MessageType, 2, "field 60.1"); err != nil {
		return "", err
	}
	if err := digits(f.Batch, 6, "field 60.2"); err != nil {
		return "", err
	}
	if f.NetworkCode == "" && f.Extra == "" {
		return f.MessageType + f.Batch, nil
	}
	if err := digits(f.NetworkCode, 3, "field 60.3"); err != nil {
		return "", err
	}
	if f.Extra != "" {
		if err := digits(f.Extra, len(f.Extra), "field 60.4 onwards"); err != nil {
			return "", err
		}
	}
	return f.MessageType + f.Batch + f.NetworkCode + f.Extra, nil
}

// ParseField60 splits field 60.
func ParseField60(s string) (Field60, error) {
	if len(s) < 8 || strings.Trim(s, "0123456789") != "" || (len(s) > 8 && len(s) < 11) {
		return Field60{}, &DecodeError{Field: 60, Kind: ErrField, Detail: fmt.Sprintf("%d digits, want 8 or at least 11", len(s))}
	}
	f := Field60{MessageType: s[:2], Batch: s[2:8]}
	if len(s) >= 11 {
		f.NetworkCode, f.Extra = s[8:11], s[11:]
	}
	return f, nil
}

// Original identifies the transaction a void, refund, completion or
// reversal refers to (field 61: original batch, STAN and date; field 37
// carries its retrieval reference number and field 38 its authorisation code).
type Original struct {
	Batch    string // 6 digits
	STAN     string // 6 digits
	Date     string // MMDD, may be empty
	RRN      string // 12 characters, may be empty
	AuthCode string // 6 characters, may be empty
}

// Field61 returns field 61.
func (o Original) Field61() (string, error) {
	if err := digits(o.Batch, 6, "original batch"); err != nil {
		return "", err
	}
	if err := digits(o.STAN, 6, "original STAN"); err != nil {
		return "", err
	}
	if o.Date == "" {
		return o.Batch + o.STAN, nil
	}
	if err := digits(o.Date, 4, "original date"); err != nil {
		return "", err
	}
	return o.Batch + o.STAN + o.Date, nil
}

// ParseOriginal reads field 61.
func ParseOriginal(s string) (Original, error) {
	if (len(s) != 12 && len(s) < 16) || strings.Trim(s, "0123456789") != "" {
		return Original{}, &DecodeError{Field: 61, Kind: ErrField, Detail: fmt.Sprintf("%d digits, want 12 or at least 16", len(s))}
	}
	o := Original{Batch: s[:6], STAN: s[6:12]}
	if len(s) >= 16 {
		o.Date = s[12:16]
	}
	return o, nil
}

// Totals are the batch totals of a settlement (field 48 of 0500/0510):
// debit (purchases, completions) and credit (refunds, voids) amounts and
// counts, for domestic and for foreign cards.
type Totals struct {
	Domestic, Foreign Tally
	Currency          string // field 49, ISO 4217 numeric; "156" when empty
}

// Tally is one card group's totals and the host's verdict on them.
type Tally struct {
	DebitAmount  int64 // minor units
	DebitCount   int
	CreditAmount int64
	CreditCount  int
	// Result is "0" in a request; in a response "1" balanced, "2" not
	// balanced, "3" error.
	Result string
}

// Settlement result codes in a 0510 response.
const (
	SettleBalanced    = "1"
	SettleNotBalanced = "2"
	SettleError       = "3"
)

func (t Tally) encode() (string, error) {
	if t.DebitAmount < 0 || t.CreditAmount < 0 || t.DebitAmount > maxAmount || t.CreditAmount > maxAmount {
		return "", fmt.Errorf("settlement amount out of range: %w", ErrInvalidValue)
	}
	if t.DebitCount < 0 || t.CreditCount < 0 || t.DebitCount > 999 || t.CreditCount > 999 {
		return "", fmt.Errorf("settlement count out of range 0 to 999: %w", ErrInvalidValue)
	}
	r := t.Result
	if r == "" {
		r = "0"
	}
	if err := digits(r, 1, "settlement result"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%012d%03d%012d%03d%s", t.DebitAmount, t.DebitCount, t.CreditAmount, t.CreditCount, r), nil
}

// Field48 returns the 62 digits of field 48.
func (t Totals) Field48() (string, error) {
	d, err := t.Domestic.encode()
	if err != nil {
		return "", err
	}
	f, err := t.Foreign.encode()
	if err != nil {
		return "", err
	}
	return d + f, nil
}

// ParseTotals reads field 48 of a settlement message.
func ParseTotals(s string) (Totals, error) {
	if len(s) != 62 || strings.Trim(s, "0123456789") != "" {
		return Totals{}, &DecodeError{Field: 48, Kind: ErrField, Detail: fmt.Sprintf("%d digits, want 62", len(s))}
	}
	tally := func(p string) Tally {
		return Tally{DebitAmount: atoi64(p[0:12]), DebitCount: int(atoi64(p[12:15])), CreditAmount: atoi64(p[15:27]), CreditCount: int(atoi64(p[27:30])), Result: p[30:31]}
	}
	return Totals{Domestic: tally(s[:31]), Foreign: tally(s[31:])}, nil
}

func atoi64(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

// BatchEntry is one transaction in a batch upload (0320). Field 48 holds a
// 2-digit count and then, per entry: card organisation code (2 digits),
// STAN (6), PAN length (2), PAN left-aligned in 19 digits zero-filled, and
// amount (12). The public descriptions of the UnionPay batch upload give the
// entry fields but not one layout for them; this is CityCard's, documented
// in FIELDS.md.
type BatchEntry struct {
	CardOrg string // "00" domestic (UnionPay), other codes for foreign organisations
	STAN    string
	PAN     string // clear card number: batch upload carries it, logs never do
	Amount  int64
}

// MaxBatchEntries is how many entries fit in field 48 (322 digits).
const MaxBatchEntries = 7

const batchEntryDigits = 2 + 6 + 2 + 19 + 12

// EncodeBatch returns field 48 for a batch upload.
func EncodeBatch(entries []BatchEntry) (string, error) {
	if len(entries) == 0 || len(entries) > MaxBatchEntries {
		return "", fmt.Errorf("a batch upload carries 1 to %d entries, not %d: %w", MaxBatchEntries, len(entries), ErrInvalidValue)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%02d", len(entries))
	for i, e := range entries {
		if err := digits(e.CardOrg, 2, "card organisation code"); err != nil {
			return "", err
		}
		if err := digits(e.STAN, 6, "STAN"); err != nil {
			return "", err
		}
		if len(e.PAN) < 12 || len(e.PAN) > 19 || strings.Trim(e.PAN, "0123456789") != "" {
			return "", fmt.Errorf("entry %d: card number must be 12 to 19 digits: %w", i+1, ErrInvalidValue)
		}
		if e.Amount < 0 || e.Amount > maxAmount {
			return "", fmt.Errorf("entry %d: amount out of range: %w", i+1, ErrInvalidValue)
		}
		fmt.Fprintf(&b, "%s%s%02d%s%012d", e.CardOrg, e.STAN, len(e.PAN), e.PAN+strings.Repeat("0", 19-len(e.PAN)), e.Amount)
	}
	return b.String(), nil
}

// ParseBatch reads field 48 of a batch upload.
func ParseBatch(s string) ([]BatchEntry, error) {
	bad := func(detail string) error { return &DecodeError{Field: 48, Kind: ErrField, Detail: detail} }
	if len(s) < 2 || strings.Trim(s, "0123456789") != "" {
		return nil, bad("not digits")
	}
	n := int(atoi64(s[:2]))
	if n < 1 || n > MaxBatchEntries || len(s) != 2+n*batchEntryDigits {
		return nil, bad(fmt.Sprintf("count %d does not match %d digits", n, len(s)))
	}
	out := make([]BatchEntry, n)
	for i := range out {
		p := s[2+i*batchEntryDigits:]
		l := int(atoi64(p[8:10]))
		if l < 12 || l > 19 {
			return nil, bad(fmt.Sprintf("entry %d: card number length %d", i+1, l))
		}
		out[i] = BatchEntry{CardOrg: p[:2], STAN: p[2:8], PAN: p[10 : 10+l], Amount: atoi64(p[29:41])}
	}
	return out, nil
}

// Balance is field 54 of a balance inquiry response: account type (2),
// amount type (2, "01" ledger, "02" available), currency (3), sign ('C'
// credit, 'D' debit) and amount (12, minor units).
type Balance struct {
	AccountType string
	AmountType  string
	Currency    string
	Amount      int64 // minor units; negative for a debit balance
}

// Field54 encodes the balance.
func (b Balance) Field54() (string, error) {
	if err := digits(b.AccountType, 2, "account type"); err != nil {
		return "", err
	}
	if err := digits(b.AmountType, 2, "amount type"); err != nil {
		return "", err
	}
	if err := digits(b.Currency, 3, "currency code"); err != nil {
		return "", err
	}
	sign, amt := "C", b.Amount
	if amt < 0 {
		sign, amt = "D", -amt
	}
	if amt > maxAmount {
		return "", fmt.Errorf("balance out of range: %w", ErrInvalidValue)
	}
	return fmt.Sprintf("%s%s%s%s%012d", b.AccountType, b.AmountType, b.Currency, sign, amt), nil
}

// ParseBalance reads field 54.
func ParseBalance(s string) (Balance, error) {
	if len(s) != 20 || strings.Trim(s[:7]+s[8:], "0123456789") != "" || (s[7] != 'C' && s[7] != 'D') {
		return Balance{}, &DecodeError{Field: 54, Kind: ErrField, Detail: "want 2+2+3 digits, C or D, 12 digits"}
	}
	b := Balance{AccountType: s[:2], AmountType: s[2:4], Currency: s[4:7], Amount: atoi64(s[8:])}
	if s[7] == 'D' {
		b.Amount = -b.Amount
	}
	return b, nil
}
