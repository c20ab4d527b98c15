package utilities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/citycard/citycard/sdk"
)

// keys are the idempotency keys of everything one pay message causes,
// all derived from the message's own key, so a redelivered message repeats
// them and each effect happens once.
type keys struct {
	payment   string // card.payment.v1's idempotency key
	reversal  string // card.reversal.v1's idempotency key
	reference string // the biller's payment reference
}

func deriveKeys(key string) keys {
	sum := sha256.Sum256([]byte("utilities:" + key))
	return keys{
		payment:  derive("payment", key),
		reversal: derive("reversal", key),
		// Billers take short references; 128 bits of the hash are as unique
		// as the key itself for any practical purpose.
		reference: "CC" + hex.EncodeToString(sum[:16]),
	}
}

// derive prefixes key with the effect's name, readable in the hub's logs,
// or, when that would be longer than an envelope token may be, hashes it;
// the two forms use different separators so they can never meet.
func derive(effect, key string) string {
	k := "utilities." + effect + ":" + key
	if len(k) <= 128 {
		return k
	}
	sum := sha256.Sum256([]byte(key))
	return "utilities." + effect + "#" + hex.EncodeToString(sum[:])
}

// pay pays one bill with a card. The order is what makes it safe:
//
//  1. Ask the biller what became of our reference: a redelivery after a
//     lost answer finds the payment done (or refused) and only completes
//     the receipt (or the reversal).
//  2. Read the bill and apply the biller's rules here, so a payment the
//     biller would refuse never touches the card.
//  3. Charge the card (card.payment.v1). A decline is a receipt.
//  4. Pay the biller under the reference. A refusal reverses the charge
//     (card.reversal.v1); no answer is a retryable error, and the
//     redelivery resumes at step 1.
func (st *state) pay(ctx context.Context, log *slog.Logger, key string, in billPay) ([]sdk.Message, error) {
	if key == "" {
		return nil, &sdk.Error{Code: sdk.CodeIdempotencyKeyRequired, Field: "/idempotency_key",
			Message: TypeBillPay + " moves money and needs an idempotency key, so that a redelivery pays once"}
	}
	merchant, ok := st.billers[in.Biller]
	if !ok {
		return nil, unknownBiller(in.Biller)
	}
	k := deriveKeys(key)
	log = log.With("biller", in.Biller, "account", in.Account, "bill_id", in.BillID, "amount", in.Amount,
		"payment_key", k.payment, "reference", k.reference)
	charge, err := json.Marshal(cardPayment{Card: in.Card, Merchant: merchant, Amount: in.Amount, Currency: in.Currency, PIN: in.PIN})
	if err != nil {
		return nil, err
	}
	chargeMsg := sdk.Message{Type: TypeCardPayment, IdempotencyKey: k.payment, Payload: charge}
	want := billerPayRequest{Biller: in.Biller, Account: in.Account, BillID: in.BillID, Amount: in.Amount, Currency: in.Currency, Reference: k.reference}

	// 1. What became of this reference?
	prev, found, err := st.biller.lookup(ctx, k.reference)
	if err != nil {
		return nil, billerFailure(log, "looking up the payment", err)
	}
	if found {
		if prev.Request != want {
			return nil, &sdk.Error{Code: sdk.CodeIdempotencyConflict, Field: "/idempotency_key",
				Message: fmt.Sprintf("idempotency key %q was already used to pay a different bill or amount", key)}
		}
		return st.resume(ctx, log, in, k, chargeMsg, prev)
	}

	// 2. The bill and the biller's rules.
	b, err := st.biller.bill(ctx, in.Biller, in.Account)
	if err != nil {
		return nil, billerFailure(log, "reading the bill", err)
	}
	if err := checkBill(b, in); err != nil {
		log.Info("payment refused before charging", "code", err.Code, "reason", err.Message)
		return nil, err
	}

	// 3. The card.
	hp, err := st.charge(ctx, chargeMsg)
	if err != nil {
		log.Warn("card payment failed", "err", err)
		return nil, err
	}
	r := Receipt{Status: hp.Status, Reason: hp.Reason, Biller: in.Biller, Account: in.Account, BillID: in.BillID,
		Amount: in.Amount, Currency: in.Currency, Payment: hp.ID, Balance: hp.Balance}
	if hp.Status != Approved {
		log.Info("card payment declined", "reason", hp.Reason)
		return reply(TypeReceipt, r)
	}
	log = log.With("payment", hp.ID)

	// 4. The biller.
	bp, err := st.biller.pay(ctx, want)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		log.Warn("biller refused a charged payment; reversing the charge", "biller_code", ref.Code, "reason", ref.Message)
		if err := st.reverse(ctx, log, k, ref.Code); err != nil {
			return nil, err
		}
		return nil, ref.hubError()
	case err != nil:
		// The biller may or may not have booked it: only the redelivery,
		// asking by reference, can tell. The charge stands meanwhile.
		log.Warn("biller did not answer; the charge stands until the redelivery completes it", "err", err)
		return nil, unavailable("paying the biller (the card payment stands; redeliver to complete it)", err)
	}
	log.Info("bill paid", "biller_receipt", bp.Receipt, "outstanding", bp.Outstanding)
	return reply(TypeReceipt, completed(r, bp))
}

// resume finishes a payment the biller already answered under our
// reference, in an earlier delivery of the same message.
func (st *state) resume(ctx context.Context, log *slog.Logger, in billPay, k keys, chargeMsg sdk.Message, prev billerLookup) ([]sdk.Message, error) {
	switch {
	case prev.Status == "applied" && prev.Payment != nil:
		// The biller only ever sees approved charges, so this replays the
		// hub's first answer: the same transfer, charged once.
		hp, err := st.charge(ctx, chargeMsg)
		if err != nil {
			return nil, err
		}
		if hp.Status != Approved {
			log.Error("the biller holds a payment whose card charge was declined; an operator must look", "reason", hp.Reason)
			return nil, &sdk.Error{Code: sdk.CodeInternal, Message: fmt.Sprintf("biller receipt %s has no approved card payment (%s)", prev.Payment.Receipt, hp.Reason)}
		}
		log.Info("bill payment completed on redelivery", "payment", hp.ID, "biller_receipt", prev.Payment.Receipt)
		return reply(TypeReceipt, completed(Receipt{Status: Approved, Biller: in.Biller, Account: in.Account, BillID: in.BillID,
			Amount: in.Amount, Currency: in.Currency, Payment: hp.ID, Balance: hp.Balance}, *prev.Payment))
	case prev.Status == "refused" && prev.Error != nil:
		log.Info("biller refused this payment before; making sure the charge is reversed", "biller_code", prev.Error.Code)
		if err := st.reverse(ctx, log, k, prev.Error.Code); err != nil {
			return nil, err
		}
		return nil, prev.Error.hubError()
	}
	return nil, unavailable("looking up the payment", fmt.Errorf("%w: unreadable status %q", errUnreachable, prev.Status))
}

// charge submits the card payment and reads the hub's answer.
func (st *state) charge(ctx context.Context, m sdk.Message) (hubPayment, error) {
	res, err := st.hub.Submit(ctx, m)
	if err != nil {
		return hubPayment{}, err
	}
	var hp hubPayment
	if err := json.Unmarshal(res.Body, &hp); err != nil {
		return hubPayment{}, &sdk.Error{Code: sdk.CodeInternal, Message: "the hub's answer to " + TypeCardPayment + " is unreadable: " + err.Error()}
	}
	switch {
	case hp.Status == Approved && hp.ID != "":
	case hp.Status == Declined:
		if hp.Reason == "" {
			hp.Reason = "declined"
		}
	default:
		return hubPayment{}, &sdk.Error{Code: sdk.CodeInternal, Message: fmt.Sprintf("the hub answered %s with status %q", TypeCardPayment, hp.Status)}
	}
	return hp, nil
}

// reverse undoes the card payment of k. A reversal the hub already
// applied, or a payment it never applied, needs nothing more. A failure
// that may pass is retryable, so the redelivery reverses again.
func (st *state) reverse(ctx context.Context, log *slog.Logger, k keys, billerCode string) error {
	body, err := json.Marshal(cardReversal{PaymentKey: k.payment, Memo: "utilities: the biller refused the payment (" + billerCode + ")"})
	if err != nil {
		return err
	}
	_, err = st.hub.Submit(ctx, sdk.Message{Type: TypeCardReversal, IdempotencyKey: k.reversal, Payload: body})
	e := sdk.AsError(err)
	switch {
	case err == nil:
		log.Info("card payment reversed")
		return nil
	case e.Code == sdk.CodeAlreadyReversed:
		log.Info("card payment was already reversed")
		return nil
	case e.Code == sdk.CodeTransferNotFound:
		log.Warn("no card payment to reverse")
		return nil
	case e.Retryable:
		log.Warn("reversal failed; the redelivery will try again", "err", err)
		return &sdk.Error{Code: e.Code, Retryable: true, Message: "the biller refused the payment and reversing the card payment failed: " + e.Message}
	}
	log.Error("reversal refused: the card is charged for a bill the biller did not take; an operator must reverse it", "err", err)
	return &sdk.Error{Code: sdk.CodeInternal, Message: fmt.Sprintf("the biller refused the payment and the hub refused to reverse card payment %s: %v", k.payment, err)}
}

// checkBill applies the bill's own terms to a payment before any money
// moves: the bill quoted is the current one, in its currency, and the
// amount keeps the biller's rules on partial and over-payment.
func checkBill(b bill, in billPay) *sdk.Error {
	switch {
	case b.ID != in.BillID:
		return &sdk.Error{Code: sdk.CodeConflict, Field: "/payload/bill_id",
			Message: fmt.Sprintf("account %s's current bill is %s, not %s; read the bill again", in.Account, b.ID, in.BillID)}
	case b.Currency != in.Currency:
		return &sdk.Error{Code: sdk.CodeCurrencyMismatch, Field: "/payload/currency",
			Message: fmt.Sprintf("%s bills in %s, not %s", b.Name, b.Currency, in.Currency)}
	case in.Amount < b.Outstanding && !b.Partial:
		return &sdk.Error{Code: sdk.CodeInvalidAmount, Field: "/payload/amount",
			Message: fmt.Sprintf("%s takes no partial payment: pay the %d fen outstanding on %s, not %d", b.Name, b.Outstanding, b.ID, in.Amount)}
	case in.Amount > b.Outstanding && !b.Over:
		if b.Outstanding <= 0 {
			return &sdk.Error{Code: sdk.CodeInvalidAmount, Field: "/payload/amount",
				Message: fmt.Sprintf("%s takes no payment in advance, and nothing is owed on %s", b.Name, b.ID)}
		}
		return &sdk.Error{Code: sdk.CodeInvalidAmount, Field: "/payload/amount",
			Message: fmt.Sprintf("%s takes no over-payment: pay at most the %d fen outstanding on %s, not %d", b.Name, b.Outstanding, b.ID, in.Amount)}
	}
	return nil
}

func completed(r Receipt, bp billerPayment) Receipt {
	r.BillerReceipt = bp.Receipt
	r.Outstanding = &bp.Outstanding
	r.SettlementDate = bp.SettlementDate
	return r
}
