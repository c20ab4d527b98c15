package cards

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// SplitPaymentRequest completes a payment the city card could pay only
// part of: the hold on the card (its part, placed with HoldRequest.UpTo)
// is posted together with the bank card's part, which the acquirer has
// approved, as one payment of the whole amount.
type SplitPaymentRequest struct {
	PaymentRequest
	// Holds are the city card's part; none when the card had nothing to
	// give.
	Holds []int64
	// InsurerAmount is what the medical insurance fund pays, receivable
	// from the insurer.
	InsurerAmount int64
	// The bank card's part and the acquirer's references.
	BankAmount     int64
	MaskedBankCard string
	AuthCode, RRN  string
	BankKey        string
	// EndSaga, when set, ends the payment's saga in the same commit as the
	// posting.
	EndSaga *store.SagaState
}

type splitOp struct {
	req    SplitPaymentRequest
	rules  *rules
	teller string
}

func (o *splitOp) Prefetch(k *ledger.Keys) {
	k.Hold(o.req.Holds...)
	k.Card(o.req.Card)
	k.Account(AccountBank, AccountInsurer, MerchantCode(o.req.Merchant))
}

func (o *splitOp) Apply(tx *ledger.Tx) (any, error) {
	r := o.req
	res := &PaymentResult{Card: r.Card, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal,
		Amount: r.Amount, Currency: r.Currency, At: tx.Now(), Legs: []Leg{}}
	var entries []store.Entry
	city := int64(0)
	for _, hid := range r.Holds {
		h, pt, ok := tx.Hold(hid)
		switch {
		case !ok:
			return nil, fault.E(fault.HoldNotFound, "hold", fmt.Sprintf("no hold %d", hid))
		case h.Status != store.HoldPending:
			return nil, fault.E(fault.HoldNotPending, "hold", fmt.Sprintf("hold %d is %s", hid, h.Status))
		case h.Card != r.Card || h.Merchant != r.Merchant:
			return nil, fault.E(fault.InvalidRequest, "hold", fmt.Sprintf("hold %d is not this card's at this merchant", hid))
		}
		tx.Release(pt)
		for _, en := range pt.Entries {
			if en.Amount > 0 {
				entries = append(entries, store.Entry{Account: en.Account, Amount: en.Amount})
				res.Legs = append(res.Legs, Leg{Purse: tx.AccountByID(en.Account).Purse, Amount: en.Amount})
				city += en.Amount
			}
		}
		h.Status, h.Captured = store.HoldCaptured, h.Amount
		tx.PutHold(h)
	}
	if r.InsurerAmount > 0 {
		entries = append(entries, store.Entry{Account: systemAccount(tx, AccountInsurer, r.Currency).ID, Amount: r.InsurerAmount})
		res.Legs = append([]Leg{{Purse: LegInsurer, Amount: r.InsurerAmount}}, res.Legs...)
	}
	if r.InsurerAmount+city+r.BankAmount != r.Amount {
		return nil, fault.E(fault.InvalidAmount, "amount", fmt.Sprintf("the insurer's part %d, the card's %d and the bank card's %d do not make %d",
			r.InsurerAmount, city, r.BankAmount, r.Amount))
	}
	if r.BankAmount > 0 {
		entries = append(entries, store.Entry{Account: systemAccount(tx, AccountBank, r.Currency).ID, Amount: r.BankAmount})
		res.Legs = append(res.Legs, Leg{Purse: LegBankCard, Amount: r.BankAmount})
	}
	entries = append(entries, store.Entry{Account: merchantAccount(tx, r.Merchant, r.Currency).ID, Amount: -r.Amount})
	var ref int64
	if len(r.Holds) > 0 {
		ref = r.Holds[0]
	}
	id, err := tx.Post(store.Transfer{Kind: store.TransferPayment, Currency: r.Currency, Card: r.Card, Ref: ref,
		Amount: r.Amount, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal, Operator: o.teller,
		Memo:    splitMemo(r),
		Entries: entries}, time.Time{})
	if err != nil {
		return nil, err
	}
	if g := r.EndSaga; g != nil {
		tx.EndSaga(g.Operator, g.Key, g.State, g.Data)
	}
	res.ID, res.Status = strconv.FormatInt(id, 10), Approved
	if r.BankAmount > 0 {
		res.BankKey = r.BankKey
	}
	if c, ok := tx.Card(r.Card); ok {
		if p, ok := o.rules.product(c.Product); ok {
			bal := cardBalance(tx, c.Number, p)
			res.Balance = &bal
		}
	}
	return res, nil
}

// PaySplit posts a payment the city card and its linked bank card share.
// It is answered under c's key: the payment's own.
func (s *Service) PaySplit(ctx context.Context, c Call, req SplitPaymentRequest) (ledger.Outcome, error) {
	if req.Amount <= 0 || req.BankAmount < 0 || req.InsurerAmount < 0 || req.BankAmount+req.InsurerAmount > req.Amount {
		return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount", "the amounts of a split payment are not valid")
	}
	if err := checkPaymentText(req.PaymentRequest); err != nil {
		return ledger.Outcome{}, err
	}
	if err := checkTexts(textField{"masked_bank_card", req.MaskedBankCard, MaxIDLen, false},
		textField{"auth_code", req.AuthCode, MaxTokenLen, false}, textField{"rrn", req.RRN, MaxTokenLen, false},
		textField{"bank_key", req.BankKey, MaxTokenLen, false}); err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "payments.split", req.Card, &splitOp{req: req, rules: s.rules, teller: c.Operator})
}

// Decline records a decline as the answer to c's request, so that the
// request sent again gets it back.
func (s *Service) Decline(ctx context.Context, c Call, req PaymentRequest, reason string) (ledger.Outcome, error) {
	if err := checkPaymentText(req); err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "payments.create", req.Card, declineOp{res: &PaymentResult{Status: Declined, Reason: reason,
		Card: req.Card, Channel: req.Channel, Merchant: req.Merchant, Terminal: req.Terminal,
		Amount: req.Amount, Currency: req.Currency, Legs: []Leg{}}})
}

func splitMemo(r SplitPaymentRequest) string {
	var parts []string
	if r.InsurerAmount > 0 {
		parts = append(parts, fmt.Sprintf("insurer paid %d", r.InsurerAmount))
	}
	if r.BankAmount > 0 {
		parts = append(parts, fmt.Sprintf("bank card %s paid %d, auth %s rrn %s", r.MaskedBankCard, r.BankAmount, r.AuthCode, r.RRN))
	}
	return strings.Join(parts, "; ")
}
