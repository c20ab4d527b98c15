package wiring_test

import (
	"testing"

	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
)

// billLines are the lines medHub.bill sends for a bill of amount: a
// consultation and the medicine, half each, so they total amount.
func billLines(amount int64) []sim.Line {
	return []sim.Line{sim.NewLine("A001", "Consultation", amount/2, 1), sim.NewLine("B002", "Medicine", amount-amount/2, 1)}
}

// billTotal is what a bill's lines add up to.
func billTotal(lines []sim.Line) int64 {
	var total int64
	for _, l := range lines {
		total += l.Amount
	}
	return total
}

// insurerSplit is the insurer's division of total under the ratios fundBps
// and acctBps (basis points): the fund pays its share, the personal account
// its share of the rest, the patient the remainder in cash. Worked out here,
// not by the simulator, so that the tests state what they expect.
func insurerSplit(total, fundBps, acctBps int64) sdk.MedicalSplit {
	fund := total * fundBps / 10_000
	acct := (total - fund) * acctBps / 10_000
	return sdk.MedicalSplit{FundPay: fund, AcctPay: acct, CashPay: total - fund - acct}
}

// patientPays is what the card (its purses, then a linked bank card) pays of
// a bill the insurer split as s.
func patientPays(s sdk.MedicalSplit) int64 { return s.AcctPay + s.CashPay }

// paymentOf decodes the hub's answer carried in a payer plugin's receipt.
func paymentOf(t *testing.T, m map[string]any) (sdk.PaymentResult, bool) {
	t.Helper()
	body, dup := receipt(t, m)
	var r sdk.PaymentResult
	into(t, body, &r)
	return r, dup
}

// legs is what each purse (or "bank_card") paid of a payment.
func legs(r sdk.PaymentResult) map[string]int64 {
	out := map[string]int64{}
	for _, l := range r.Legs {
		out[l.Purse] += l.Amount
	}
	return out
}

// pay sends the payer plugin a charge of amount on the hub's card and
// decodes the hub's answer.
func (h *splitHub) pay(t *testing.T, key string, amount int64) (sdk.PaymentResult, bool) {
	t.Helper()
	_, m := h.send("payer.charge.v1", key, map[string]any{"key": key, "card": h.card, "amount": amount, "terminal": "T-PAYER"})
	return paymentOf(t, m)
}
