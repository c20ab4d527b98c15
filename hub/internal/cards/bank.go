package cards

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// Legs of a payment paid by others than the card's purses.
const (
	LegBankCard = "bank_card" // a bank card, through the acquirer
	LegInsurer  = "insurer"   // the medical insurance fund
)

// BankPaymentRequest records a bank card payment the acquirer has already
// answered. The card is masked (first six and last four digits): the hub
// never keeps a bank card's number in clear.
type BankPaymentRequest struct {
	MaskedCard string
	Channel    string
	Merchant   string
	Terminal   string
	Amount     int64
	Currency   string
	// Approved is the acquirer's answer; Reason is the decline's registry
	// code when it is not.
	Approved bool
	Reason   string
	// AuthCode and RRN are the acquirer's references; BankKey names the
	// authorisation at the acquirer plugin.
	AuthCode, RRN, BankKey string
}

type bankOp struct {
	req  BankPaymentRequest
	hold int64 // for a completion: what was pre-authorised
}

func (o *bankOp) Prefetch(k *ledger.Keys) {
	k.Account(AccountBank, MerchantCode(o.req.Merchant))
}

func (o *bankOp) Apply(tx *ledger.Tx) (any, error) {
	r := o.req
	res := &PaymentResult{Card: r.MaskedCard, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal,
		Amount: r.Amount, Currency: r.Currency, At: tx.Now(), Legs: []Leg{}, BankKey: r.BankKey}
	if !r.Approved {
		res.BankKey = ""
		res.Status, res.Reason = Declined, r.Reason
		return res, nil
	}
	// The acquirer owes the hub what it approved; the hub owes the merchant.
	id, err := tx.Post(store.Transfer{Kind: store.TransferPayment, Currency: r.Currency, Channel: r.Channel,
		Merchant: r.Merchant, Terminal: r.Terminal,
		Memo: fmt.Sprintf("bank card %s auth %s rrn %s", r.MaskedCard, r.AuthCode, r.RRN),
		Entries: []store.Entry{
			{Account: systemAccount(tx, AccountBank, r.Currency).ID, Amount: r.Amount},
			{Account: merchantAccount(tx, r.Merchant, r.Currency).ID, Amount: -r.Amount},
		}}, time.Time{})
	if err != nil {
		return nil, err
	}
	res.ID, res.Status = strconv.FormatInt(id, 10), Approved
	res.Legs = []Leg{{Purse: LegBankCard, Amount: r.Amount}}
	return res, nil
}

// CheckAcceptor refuses an unknown merchant or terminal, or a terminal of
// another merchant, before an acquirer is asked anything.
func (s *Service) CheckAcceptor(ctx context.Context, merchant, terminal string) error {
	return s.checkAcceptor(ctx, merchant, terminal)
}

// BankPayment records a bank card payment as the acquirer answered it: an
// approval moves the amount from the acquirer's receivable to the
// merchant; a decline is recorded as the answer, so that a resend of the
// request gets it back without the acquirer being asked again.
func (s *Service) BankPayment(ctx context.Context, c Call, req BankPaymentRequest) (ledger.Outcome, error) {
	if req.Amount <= 0 {
		return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount", "amount must be positive")
	}
	if err := checkBankText(req); err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "payments.bank", req.MaskedCard, &bankOp{req: req})
}

// answerOp records a result decided outside the writer (a bank card's
// pre-authorisation or its cancellation, which move no money in the
// ledger) as the answer to its request.
type answerOp struct{ res any }

func (answerOp) Prefetch(*ledger.Keys)           {}
func (o answerOp) Apply(*ledger.Tx) (any, error) { return o.res, nil }

// Record keeps res as the answer to c's request, so that the request sent
// again gets it back; nothing else is written.
func (s *Service) Record(ctx context.Context, c Call, action, target string, res any) (ledger.Outcome, error) {
	return s.submit(ctx, c, action, target, answerOp{res: res})
}

// BankCaptureRequest posts the completion of a bank card's
// pre-authorisation, which the acquirer has approved.
type BankCaptureRequest struct {
	BankPaymentRequest
	HoldAmount int64 // what was pre-authorised
}

type bankCaptureOp struct{ bankOp }

func (o *bankCaptureOp) Apply(tx *ledger.Tx) (any, error) {
	v, err := o.bankOp.Apply(tx)
	if err != nil {
		return nil, err
	}
	p := v.(*PaymentResult)
	return &HoldResult{Status: store.HoldCaptured, Card: p.Card, Merchant: p.Merchant, Amount: o.hold, Captured: p.Amount,
		Currency: p.Currency, Transfer: p.ID, Legs: p.Legs, At: p.At, BankKey: p.BankKey}, nil
}

// BankCapture posts a bank card's completion: the acquirer owes the hub
// the amount completed, the hub owes the merchant.
func (s *Service) BankCapture(ctx context.Context, c Call, req BankCaptureRequest) (ledger.Outcome, error) {
	req.Approved = true
	if req.Amount <= 0 {
		return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount", "amount must be positive")
	}
	return s.submit(ctx, c, "holds.capture", req.MaskedCard, &bankCaptureOp{bankOp{req: req.BankPaymentRequest, hold: req.HoldAmount}})
}

// BankRefundRequest posts part of a bank card's payment the acquirer has
// refunded: the merchant owes it back, the acquirer no longer owes it.
type BankRefundRequest struct {
	Payment int64 // the transfer of the payment
	Amount  int64
	Memo    string
}

type bankRefundOp struct {
	orig   store.Transfer
	req    BankRefundRequest
	teller string
}

func (o *bankRefundOp) Prefetch(k *ledger.Keys) {
	k.Reversal(o.orig.ID)
	k.Account(AccountBank, MerchantCode(o.orig.Merchant))
}

func (o *bankRefundOp) Apply(tx *ledger.Tx) (any, error) {
	t := o.orig
	if tx.Reversed(t.ID) {
		return nil, fault.E(fault.AlreadyReversed, "transfer", fmt.Sprintf("transfer %d is already reversed", t.ID))
	}
	id, err := tx.Post(store.Transfer{Kind: store.TransferRefund, Currency: t.Currency, Ref: t.ID, Amount: o.req.Amount,
		Channel: t.Channel, Merchant: t.Merchant, Terminal: t.Terminal, Operator: o.teller, Memo: o.req.Memo,
		Entries: []store.Entry{
			{Account: merchantAccount(tx, t.Merchant, t.Currency).ID, Amount: o.req.Amount},
			{Account: systemAccount(tx, AccountBank, t.Currency).ID, Amount: -o.req.Amount},
		}}, time.Time{})
	if err != nil {
		return nil, err
	}
	return &ReverseResult{ID: strconv.FormatInt(id, 10), Reverses: strconv.FormatInt(t.ID, 10), Kind: t.Kind,
		Amount: o.req.Amount, Currency: t.Currency, At: tx.Now()}, nil
}

// BankRefund posts part of a bank card payment refunded at the bank. How
// much of the payment is left to refund is the acquirer's to enforce: it
// declines a refund beyond it before anything is posted here.
func (s *Service) BankRefund(ctx context.Context, c Call, req BankRefundRequest) (ledger.Outcome, error) {
	if err := CheckText("memo", req.Memo, MaxMemoLen, true); err != nil {
		return ledger.Outcome{}, err
	}
	t, err := s.st.GetTransfer(ctx, req.Payment)
	if err != nil {
		return ledger.Outcome{}, fault.E(fault.TransferNotFound, "transfer", fmt.Sprintf("no transfer %d", req.Payment))
	}
	if t.Kind != store.TransferPayment || t.Card != "" || req.Amount <= 0 || req.Amount >= t.Amount {
		return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount",
			fmt.Sprintf("part of a bank card's payment of %d can be refunded, not %d of transfer %d", t.Amount, req.Amount, t.ID))
	}
	return s.submit(ctx, c, "transfers.refund", strconv.FormatInt(t.ID, 10), &bankRefundOp{orig: t, req: req, teller: c.Operator})
}
