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

// LegBankCard is the leg of a payment a bank card paid.
const LegBankCard = "bank_card"

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
	// AuthCode and RRN are the acquirer's references.
	AuthCode, RRN string
}

type bankOp struct {
	req BankPaymentRequest
}

func (o *bankOp) Prefetch(k *ledger.Keys) {
	k.Account(AccountBank, MerchantCode(o.req.Merchant))
}

func (o *bankOp) Apply(tx *ledger.Tx) (any, error) {
	r := o.req
	res := &PaymentResult{Card: r.MaskedCard, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal,
		Amount: r.Amount, Currency: r.Currency, At: tx.Now(), Legs: []Leg{}}
	if !r.Approved {
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
	return s.submit(ctx, c, "payments.bank", req.MaskedCard, &bankOp{req: req})
}
