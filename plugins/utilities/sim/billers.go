package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Rules is what one biller accepts against a bill.
type Rules struct {
	// Partial allows paying less than what is outstanding.
	Partial bool `json:"partial_allowed"`
	// Over allows paying more than what is outstanding; the excess is kept
	// as credit against the next bill.
	Over bool `json:"overpayment_allowed"`
}

// BillerSpec describes one biller of the simulator.
type BillerSpec struct {
	// Code is the biller's short name in URLs and files, e.g. "water".
	Code string `json:"code"`
	// Name is the biller's trading name, e.g. "City Water".
	Name string `json:"name"`
	Rules
	// MinBill and MaxBill bound the bills the simulator makes up, in fen.
	MinBill int64 `json:"-"`
	MaxBill int64 `json:"-"`
}

// DefaultBillers are the city's utilities as the simulator plays them.
// Their rules differ on purpose, so every rule has a biller that applies
// it: water and cable TV take exactly the bill, power takes anything
// (prepaying is common), telecom takes instalments but no credit, and
// broadband takes credit but no instalments.
func DefaultBillers() []BillerSpec {
	return []BillerSpec{
		{Code: "water", Name: "City Water", Rules: Rules{Partial: false, Over: false}, MinBill: 2000, MaxBill: 20000},
		{Code: "power", Name: "City Power", Rules: Rules{Partial: true, Over: true}, MinBill: 5000, MaxBill: 20000},
		{Code: "telecom", Name: "City Telecom", Rules: Rules{Partial: true, Over: false}, MinBill: 3000, MaxBill: 15000},
		{Code: "internet", Name: "City Broadband", Rules: Rules{Partial: false, Over: true}, MinBill: 5000, MaxBill: 12000},
		{Code: "cable-tv", Name: "City Cable TV", Rules: Rules{Partial: false, Over: false}, MinBill: 2000, MaxBill: 6000},
	}
}

// Currency is the only currency the city's billers bill in.
const Currency = "CNY"

// Zone is the billers' business time zone (China Standard Time): their
// day files and due dates follow it. A fixed offset needs no tzdata.
var Zone = time.FixedZone("CST", 8*60*60)

// validAccount reports whether s has the shape of an account number: 8 to
// 12 digits.
func validAccount(s string) bool {
	if len(s) < 8 || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// assigned reports whether a well-formed account number was ever issued:
// the 9 range is unassigned, so a mistyped number is easy to play.
func assigned(account string) bool { return !strings.HasPrefix(account, "9") }

// Bill is one account's current bill as the biller shows it.
type Bill struct {
	Biller string `json:"biller"`
	// Name is the biller's trading name.
	Name    string `json:"name"`
	Account string `json:"account"`
	// ID names this bill; a payment must quote it, so that a payment meant
	// for last month's bill is never booked against this month's.
	ID string `json:"bill_id"`
	// Period is the billed month, YYYY-MM.
	Period string `json:"period"`
	// DueDate is YYYY-MM-DD in the billers' zone: the 25th of the month
	// after Period.
	DueDate string `json:"due_date"`
	// Amount is what the bill was issued for, in fen.
	Amount int64 `json:"amount"`
	// Outstanding is what is still owed, in fen; negative is credit.
	Outstanding int64  `json:"outstanding"`
	Currency    string `json:"currency"`
	// Status is unpaid, partially_paid, paid or credit.
	Status string `json:"status"`
	Rules
}

// Bill statuses.
const (
	StatusUnpaid        = "unpaid"
	StatusPartiallyPaid = "partially_paid"
	StatusPaid          = "paid"
	StatusCredit        = "credit"
)

func (b *Bill) setStatus() {
	switch {
	case b.Outstanding < 0:
		b.Status = StatusCredit
	case b.Outstanding == 0:
		b.Status = StatusPaid
	case b.Outstanding < b.Amount:
		b.Status = StatusPartiallyPaid
	default:
		b.Status = StatusUnpaid
	}
}

// newBill makes up the bill of (biller, account) for the month of now. The
// same biller, account and month always give the same bill, so tests and
// demos can name accounts without setting them up.
func newBill(spec BillerSpec, account string, now time.Time) Bill {
	now = now.In(Zone)
	period := now.Format("2006-01")
	sum := sha256.Sum256([]byte(spec.Code + "/" + account + "/" + period))
	span := uint64(spec.MaxBill - spec.MinBill + 1)
	amount := spec.MinBill + int64(binary.BigEndian.Uint64(sum[:8])%span)
	// The month is billed in full and due on the 25th of the next.
	due := time.Date(now.Year(), now.Month()+1, 25, 0, 0, 0, 0, Zone)
	b := Bill{
		Biller: spec.Code, Name: spec.Name, Account: account,
		ID:     fmt.Sprintf("%s-%s-%X", strings.ToUpper(strings.ReplaceAll(spec.Code, "-", "")), now.Format("200601"), sum[8:12]),
		Period: period, DueDate: due.Format(time.DateOnly),
		Amount: amount, Outstanding: amount, Currency: Currency, Rules: spec.Rules,
	}
	b.setStatus()
	return b
}
