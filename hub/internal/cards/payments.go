package cards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk"
)

// PaymentRequest debits a card for a channel.
type PaymentRequest struct {
	Card     string `json:"card"`
	Channel  string `json:"channel"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	PIN      string `json:"pin,omitempty"`
	// Purses, when set, restricts the purses that may pay to these (of
	// those the channel allows): a medical bill's personal account share
	// comes from the medical purse alone.
	Purses []string `json:"-"`
	// ShortIsError makes a card short of the amount an ErrShort error,
	// with nothing recorded, rather than a decline answered under the
	// request's key: the caller may then have the payment made otherwise.
	ShortIsError bool `json:"-"`
}

// ErrShort is the error of a payment with ShortIsError whose card cannot
// pay the amount.
var ErrShort = fault.E(fault.InsufficientFunds, "amount", "the card's purses cannot pay the amount")

// Leg is what one purse paid: the sdk's, which plugins read in the same
// answers.
type Leg = sdk.Leg

// PaymentResult is approved or declined; a decline is an answer, not an error.
type PaymentResult struct {
	ID       string `json:"id,omitempty"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Card     string `json:"card"`
	Channel  string `json:"channel"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Legs     []Leg  `json:"legs"`
	// Balance is what the card's purses hold after the payment; absent when
	// the decline came before the card's purses were looked at.
	Balance *int64 `json:"balance,omitempty"`
	// Hold fields, set for pre-authorisations.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// BankKey names the bank card's authorisation at the acquirer plugin,
	// for a payment or pre-authorisation a bank card paid all or part of:
	// what a void, refund, completion or cancellation refers to.
	BankKey string    `json:"bank_key,omitempty"`
	At      time.Time `json:"at"`
}

// Payment statuses.
const (
	Approved = "approved"
	Declined = "declined"
)

// AuditOutcome implements ledger.Outcomer.
func (r *PaymentResult) AuditOutcome() string {
	if r.Status == Declined {
		return "declined:" + r.Reason
	}
	return "ok"
}

// pinCheck is the PIN verdict reached before the writer (hashing is slow).
type pinCheck struct {
	required bool
	ok       bool
	hash     string // the hash the PIN was checked against
}

type debitOp struct {
	req     PaymentRequest
	rules   *rules
	p       catalog.Product
	pol     catalog.Policy
	order   []string
	pin     pinCheck
	hold    bool
	upTo    bool // a hold for as much of the amount as the purses have
	saga    *SagaStart
	expires time.Time
	teller  string
}

func (o *debitOp) Prefetch(k *ledger.Keys) {
	k.Card(o.req.Card)
	k.Account(MerchantCode(o.req.Merchant))
}

func (o *debitOp) decline(res *PaymentResult, reason string) (any, error) {
	res.Status = Declined
	res.Reason = reason
	res.Legs = []Leg{}
	return res, nil
}

func (o *debitOp) Apply(tx *ledger.Tx) (any, error) {
	v, err := o.apply(tx)
	if err == nil && o.saga != nil {
		g := o.saga
		tx.StartSaga(g.Operator, g.Key, g.Kind, g.Data(v.(*PaymentResult)))
	}
	return v, err
}

func (o *debitOp) apply(tx *ledger.Tx) (any, error) {
	r := o.req
	res := &PaymentResult{Card: r.Card, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal,
		Amount: r.Amount, Currency: r.Currency, At: tx.Now(), Legs: []Leg{}}
	c, err := cardInTx(tx, r.Card)
	if err != nil {
		return nil, err
	}
	if reason := statusDecline(c); reason != "" {
		return o.decline(res, reason)
	}
	// The product is resolved here, from the card the writer holds, so that
	// a payment needs no read of its own before the writer.
	p, ok := o.rules.product(c.Product)
	if !ok {
		return nil, fault.E(fault.ProductNotFound, "card", fmt.Sprintf("card %s has unknown product %q", c.Number, c.Product))
	}
	if err := checkCurrency(r.Currency, p.Currency); err != nil {
		return nil, err
	}
	o.p = p
	o.order = o.rules.purseOrder(p, r.Channel)
	if len(r.Purses) > 0 {
		o.order = slices.DeleteFunc(slices.Clone(o.order), func(name string) bool { return !slices.Contains(r.Purses, name) })
	}
	if o.pin.required {
		if c.PinHash == "" {
			// No PIN was ever set: the holder must set one at a counter.
			return o.decline(res, fault.PINRequired)
		}
		if c.PinTries >= MaxPINTries {
			return o.decline(res, fault.PINLocked)
		}
		if !o.pin.ok || c.PinHash != o.pin.hash {
			c.PinTries++
			tx.PutCard(c)
			if c.PinTries >= MaxPINTries {
				return o.decline(res, fault.PINLocked)
			}
			return o.decline(res, fault.PINIncorrect)
		}
		if c.PinTries > 0 {
			c.PinTries = 0
			tx.PutCard(c)
		}
	}
	if o.pol.MaxAmount > 0 && r.Amount > o.pol.MaxAmount {
		return o.decline(res, fault.ExceedsLimit)
	}
	legs, accs, amount := o.split(tx, c)
	if amount == 0 && r.ShortIsError {
		return nil, ErrShort
	}
	if amount == 0 {
		bal := cardBalance(tx, c.Number, o.p)
		res.Balance = &bal
		return o.decline(res, fault.InsufficientFunds)
	}
	merchant := merchantAccount(tx, r.Merchant, c.Currency)
	entries := make([]store.Entry, 0, len(legs)+1)
	for i, l := range legs {
		entries = append(entries, store.Entry{Account: accs[i].ID, Amount: l.Amount})
	}
	entries = append(entries, store.Entry{Account: merchant.ID, Amount: -amount})
	kind := store.TransferPayment
	if o.hold {
		kind = store.TransferHold
	}
	id, err := tx.Post(store.Transfer{Kind: kind, Currency: c.Currency, Card: c.Number, Pending: o.hold,
		Amount: amount, Channel: r.Channel, Merchant: r.Merchant, Terminal: r.Terminal, Operator: o.teller,
		Entries: entries}, o.expires)
	if err != nil {
		if fault.Is(err, fault.InsufficientFunds) {
			return o.decline(res, fault.InsufficientFunds)
		}
		return nil, err
	}
	res.ID = strconv.FormatInt(id, 10)
	res.Status = Approved
	res.Amount = amount
	res.Legs = legs
	if o.hold {
		exp := o.expires
		res.ExpiresAt = &exp
	}
	bal := cardBalance(tx, c.Number, o.p)
	res.Balance = &bal
	return res, nil
}

// split takes the amount from the purses in policy order and returns the
// legs, their accounts and what they make: the amount, or 0 when the
// purses cannot pay it. It spends positive balances first; only a channel
// that allows it (transit's first-ride risk) may then take purses below
// zero, down to their limits. A hold "up to" the amount takes what the
// positive balances give, whatever it is.
func (o *debitOp) split(tx *ledger.Tx, c store.Card) ([]Leg, []*store.Account, int64) {
	remaining := o.req.Amount
	take := map[string]int64{}
	var accs []*store.Account
	for _, name := range o.order {
		a := tx.Account(PurseCode(c.Number, name))
		if a == nil {
			continue
		}
		accs = append(accs, a)
		if avail := ledger.Available(*a); avail > 0 && remaining > 0 {
			n := min(avail, remaining)
			take[name] += n
			remaining -= n
		}
	}
	if remaining > 0 && o.pol.AllowNegative && !o.upTo {
		for _, a := range accs {
			room := ledger.Available(*a) - take[a.Purse] + a.NegativeLimit
			if room > 0 && remaining > 0 {
				n := min(room, remaining)
				take[a.Purse] += n
				remaining -= n
			}
		}
	}
	if remaining > 0 && !o.upTo {
		return nil, nil, 0
	}
	var legs []Leg
	var used []*store.Account
	for _, a := range accs {
		if n := take[a.Purse]; n > 0 {
			legs = append(legs, Leg{Purse: a.Purse, Amount: n})
			used = append(used, a)
		}
	}
	return legs, used, o.req.Amount - remaining
}

// prepareDebit runs the checks that need no writer: the request's shape, the
// channel policy, the merchant and terminal, and the PIN.
func (s *Service) prepareDebit(ctx context.Context, req PaymentRequest, hold bool) (*debitOp, error) {
	if err := checkNumber(req.Card, "card"); err != nil {
		return nil, err
	}
	pol, ok := s.rules.policy(req.Channel)
	if !ok {
		return nil, fault.E(fault.ChannelNotAllowed, "channel", fmt.Sprintf("unknown channel %q", req.Channel))
	}
	if !pol.AcceptsCard("city_card") {
		return nil, fault.E(fault.ChannelNotAllowed, "channel", fmt.Sprintf("channel %s does not take the city card", req.Channel))
	}
	if req.Merchant == "" {
		return nil, fault.E(fault.InvalidRequest, "merchant", "merchant is required")
	}
	if err := s.checkAcceptor(ctx, req.Merchant, req.Terminal); err != nil {
		return nil, err
	}
	if err := checkPositive(req.Amount, "amount"); err != nil {
		return nil, err
	}
	if req.Currency == "" {
		return nil, fault.E(fault.CurrencyMismatch, "currency", "currency is required")
	}
	op := &debitOp{req: req, rules: s.rules, pol: pol, hold: hold}
	// A PIN offered where the policy never asks for one (transit) is
	// ignored; anywhere else an offered PIN is checked.
	if pol.PIN.Required != catalog.PINNever && (pol.PINRequired(req.Amount) || req.PIN != "") {
		// Only a payment that needs its PIN checked reads the card before
		// the writer: the hash is slow and must not run there.
		card, err := s.loadCard(ctx, req.Card, "card")
		if err != nil {
			return nil, err
		}
		op.pin.required = true
		op.pin.hash = card.PinHash
		if req.PIN == "" {
			return op, errPINRequired
		}
		if card.PinHash != "" && card.PinTries < MaxPINTries {
			ok, err := s.verify(card.PinHash, req.PIN)
			if err != nil {
				return nil, fault.Wrap(fault.Internal, err)
			}
			op.pin.ok = ok
		}
	}
	return op, nil
}

// checkAcceptor checks that the merchant exists and owns the terminal.
// Both are cached: they are read on every payment and never deleted.
func (s *Service) checkAcceptor(ctx context.Context, merchant, terminal string) error {
	if _, ok := s.acceptors.Load("m:" + merchant); !ok {
		if _, err := s.st.GetMerchant(ctx, merchant); errors.Is(err, store.ErrNotFound) {
			return fault.E(fault.MerchantNotFound, "merchant", fmt.Sprintf("no merchant %q", merchant))
		} else if err != nil {
			return err
		}
		s.acceptors.Store("m:"+merchant, "")
	}
	if terminal == "" {
		return nil
	}
	owner, ok := s.acceptors.Load("t:" + terminal)
	if !ok {
		t, err := s.st.GetTerminal(ctx, terminal)
		if errors.Is(err, store.ErrNotFound) {
			return fault.E(fault.TerminalNotFound, "terminal", fmt.Sprintf("no terminal %q", terminal))
		} else if err != nil {
			return err
		}
		owner = t.Merchant
		s.acceptors.Store("t:"+terminal, owner)
	}
	if owner != merchant {
		return fault.E(fault.TerminalMerchantMismatch, "terminal",
			fmt.Sprintf("terminal %s belongs to merchant %s, not %s", terminal, owner, merchant))
	}
	return nil
}

var errPINRequired = errors.New("pin required")

// Pay debits a card. Declines (a frozen card, a wrong PIN, too little
// money) are answers with a reason; malformed requests are errors.
func (s *Service) Pay(ctx context.Context, c Call, req PaymentRequest) (ledger.Outcome, error) {
	return s.debit(ctx, c, req, false, false, nil, time.Time{})
}

func (s *Service) debit(ctx context.Context, c Call, req PaymentRequest, hold, upTo bool, saga *SagaStart, expires time.Time) (ledger.Outcome, error) {
	if err := checkPaymentText(req); err != nil {
		return ledger.Outcome{}, err
	}
	op, err := s.prepareDebit(ctx, req, hold)
	action := "payments.create"
	if hold {
		action = "holds.create"
	}
	if errors.Is(err, errPINRequired) {
		return s.submit(ctx, c, action, req.Card, declineOp{res: &PaymentResult{Status: Declined, Reason: fault.PINRequired,
			Card: req.Card, Channel: req.Channel, Merchant: req.Merchant, Terminal: req.Terminal,
			Amount: req.Amount, Currency: req.Currency, Legs: []Leg{}}})
	}
	if err != nil {
		return ledger.Outcome{}, err
	}
	op.expires = expires
	op.upTo = upTo
	op.saga = saga
	op.teller = c.Operator
	return s.submit(ctx, c, action, req.Card, op)
}

// declineOp answers a decline decided before the writer; it still goes
// through the writer so that the answer is recorded with its key and in
// the audit log.
type declineOp struct{ res *PaymentResult }

func (declineOp) Prefetch(*ledger.Keys) {}
func (o declineOp) Apply(tx *ledger.Tx) (any, error) {
	r := *o.res
	r.At = tx.Now()
	return &r, nil
}

// cardBalance is the sum of a card's posted purse balances.
func cardBalance(tx *ledger.Tx, number string, p catalog.Product) int64 {
	var sum int64
	for _, pu := range p.Purses {
		if a := tx.Account(PurseCode(number, pu.Name)); a != nil {
			sum += ledger.Balance(*a)
		}
	}
	return sum
}
