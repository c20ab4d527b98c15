package cards

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// HoldRequest is a pre-authorisation: the amount is reserved on the card's
// purses (it counts against the available balance) until it is captured,
// voided or expires.
type HoldRequest struct {
	PaymentRequest
	// ExpiresIn is the hold's life in seconds (default: the service's HoldTTL).
	ExpiresIn int64 `json:"expires_in,omitempty"`
	// UpTo holds as much of the amount as the purses have, rather than
	// declining when they have less; the result's amount is what was held.
	UpTo bool `json:"-"`
	// Saga, when set, is created in the same commit as the hold's answer
	// (approved or declined in the writer).
	Saga *SagaStart `json:"-"`
}

// SagaStart is a saga created with the operation that takes its first leg.
type SagaStart struct {
	Operator, Key, Kind string
	// Data is the saga's data given the operation's result; it runs in the
	// ledger writer.
	Data func(res *PaymentResult) []byte
}

// Hold reserves money on a card.
func (s *Service) Hold(ctx context.Context, c Call, req HoldRequest) (ledger.Outcome, error) {
	ttl := s.opts.HoldTTL
	if req.ExpiresIn < 0 {
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "expires_in", "expires_in must be a positive number of seconds")
	}
	if req.ExpiresIn > 0 {
		ttl = time.Duration(req.ExpiresIn) * time.Second
	}
	return s.debit(ctx, c, req.PaymentRequest, true, req.UpTo, req.Saga, s.opts.Now().UTC().Add(ttl))
}

// HoldResult is the state of a hold after a capture or a void.
type HoldResult struct {
	Hold     string `json:"hold"`
	Status   string `json:"status"`
	Card     string `json:"card"`
	Merchant string `json:"merchant"`
	Amount   int64  `json:"amount"`
	Captured int64  `json:"captured"`
	Currency string `json:"currency"`
	// Transfer is the posted capture (empty for a void).
	Transfer string    `json:"transfer,omitempty"`
	Legs     []Leg     `json:"legs"`
	At       time.Time `json:"at"`
	// BankKey names a bank card's completion at the acquirer plugin.
	BankKey string `json:"bank_key,omitempty"`
}

// CaptureRequest posts a hold, wholly or in part; the rest is released.
type CaptureRequest struct {
	Hold     int64  `json:"-"`
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
}

type holdOp struct {
	id       int64
	merchant string
	capture  bool
	amount   int64
	expire   bool // expire instead of void (the sweeper)
	now      time.Time
	teller   string
}

func (o *holdOp) Prefetch(k *ledger.Keys) {
	k.Hold(o.id)
	k.Account(MerchantCode(o.merchant))
}

func (o *holdOp) Apply(tx *ledger.Tx) (any, error) {
	h, pt, ok := tx.Hold(o.id)
	if !ok {
		return nil, fault.E(fault.HoldNotFound, "hold", fmt.Sprintf("no hold %d", o.id))
	}
	if h.Status != store.HoldPending {
		return nil, fault.E(fault.HoldNotPending, "hold", fmt.Sprintf("hold %d is %s", o.id, h.Status))
	}
	expired := !tx.Now().Before(h.ExpiresAt)
	if o.expire && !expired {
		return nil, fault.E(fault.HoldNotPending, "hold", fmt.Sprintf("hold %d has not expired", o.id))
	}
	if o.capture && expired {
		return nil, fault.E(fault.HoldExpired, "hold", fmt.Sprintf("hold %d expired at %s", o.id, h.ExpiresAt.Format(time.RFC3339)))
	}
	res := &HoldResult{Hold: strconv.FormatInt(h.ID, 10), Card: h.Card, Merchant: h.Merchant, Amount: h.Amount,
		Currency: h.Currency, Legs: []Leg{}}
	tx.Release(pt)
	switch {
	case o.capture:
		amount := o.amount
		if amount == 0 {
			amount = h.Amount
		}
		if amount > h.Amount {
			return nil, fault.E(fault.CaptureExceedsHold, "amount", fmt.Sprintf("capture of %d exceeds the hold of %d", amount, h.Amount))
		}
		// Take the captured amount from the held purses in the order they
		// were held.
		var entries []store.Entry
		left := amount
		for _, en := range pt.Entries {
			if en.Amount <= 0 || left == 0 {
				continue
			}
			n := min(en.Amount, left)
			left -= n
			entries = append(entries, store.Entry{Account: en.Account, Amount: n})
			res.Legs = append(res.Legs, Leg{Purse: tx.AccountByID(en.Account).Purse, Amount: n})
		}
		for _, en := range pt.Entries {
			if en.Amount < 0 {
				entries = append(entries, store.Entry{Account: en.Account, Amount: -amount})
				break
			}
		}
		id, err := tx.Post(store.Transfer{Kind: store.TransferCapture, Currency: h.Currency, Card: h.Card, Ref: h.ID,
			Amount: amount, Channel: pt.Channel, Merchant: pt.Merchant, Terminal: pt.Terminal, Operator: o.teller,
			Entries: entries}, time.Time{})
		if err != nil {
			return nil, err
		}
		h.Status = store.HoldCaptured
		h.Captured = amount
		res.Transfer = strconv.FormatInt(id, 10)
	case o.expire:
		h.Status = store.HoldExpired
	default:
		h.Status = store.HoldVoided
	}
	tx.PutHold(h)
	res.Status = h.Status
	res.Captured = h.Captured
	res.At = tx.Now()
	return res, nil
}

func (s *Service) holdRow(ctx context.Context, id int64) (store.Hold, error) {
	hs, err := s.st.LoadHolds(ctx, []int64{id})
	if err != nil {
		return store.Hold{}, err
	}
	if len(hs) == 0 {
		return store.Hold{}, fault.E(fault.HoldNotFound, "hold", fmt.Sprintf("no hold %d", id))
	}
	return hs[0], nil
}

// Capture posts a hold (the whole amount when req.Amount is 0).
func (s *Service) Capture(ctx context.Context, c Call, req CaptureRequest) (ledger.Outcome, error) {
	h, err := s.holdRow(ctx, req.Hold)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if req.Amount < 0 {
		return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount", "amount must be positive")
	}
	if req.Currency != "" && req.Currency != h.Currency {
		return ledger.Outcome{}, fault.E(fault.CurrencyMismatch, "currency", fmt.Sprintf("the hold is in %s", h.Currency))
	}
	return s.submit(ctx, c, "holds.capture", strconv.FormatInt(req.Hold, 10),
		&holdOp{id: req.Hold, merchant: h.Merchant, capture: true, amount: req.Amount, teller: c.Operator})
}

// Void releases a hold.
func (s *Service) Void(ctx context.Context, c Call, id int64) (ledger.Outcome, error) {
	h, err := s.holdRow(ctx, id)
	if err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "holds.void", strconv.FormatInt(id, 10), &holdOp{id: id, merchant: h.Merchant, teller: c.Operator})
}

// ExpireHolds releases every hold past its expiry and returns how many it
// expired. The server runs it periodically.
func (s *Service) ExpireHolds(ctx context.Context) (int, error) {
	hs, err := s.st.ExpiredHolds(ctx, s.opts.Now().UTC(), 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hs {
		_, err := s.eng.Submit(ctx, &holdOp{id: h.ID, merchant: h.Merchant, expire: true}, ledger.SubmitOptions{
			Audit: &store.AuditEntry{Operator: "system", Role: "system", Action: "holds.expire", Target: strconv.FormatInt(h.ID, 10)},
		})
		switch {
		case err == nil:
			n++
		case fault.Is(err, fault.HoldNotPending):
			// captured or voided meanwhile, or the writer's clock disagrees
		default:
			return n, err
		}
	}
	return n, nil
}

// ReverseRequest undoes a transfer with a new, balancing transfer.
type ReverseRequest struct {
	Transfer int64  `json:"-"`
	Memo     string `json:"memo,omitempty"`
}

// ReverseResult names the reversal.
type ReverseResult struct {
	ID       string    `json:"id"`
	Reverses string    `json:"reverses"`
	Kind     string    `json:"kind"`
	Card     string    `json:"card,omitempty"`
	Amount   int64     `json:"amount"`
	Currency string    `json:"currency"`
	At       time.Time `json:"at"`
}

var reversible = map[string]bool{store.TransferPayment: true, store.TransferTopUp: true,
	store.TransferCapture: true}

type reverseOp struct {
	orig   store.Transfer
	memo   string
	teller string
}

func (o *reverseOp) Prefetch(k *ledger.Keys) {
	k.Reversal(o.orig.ID)
	if o.orig.Card != "" {
		k.Card(o.orig.Card)
	}
	if o.orig.Merchant != "" {
		k.Account(MerchantCode(o.orig.Merchant))
	}
	k.Account(AccountCash, AccountBank, AccountInsurer)
}

func (o *reverseOp) Apply(tx *ledger.Tx) (any, error) {
	t := o.orig
	if tx.Reversed(t.ID) {
		return nil, fault.E(fault.AlreadyReversed, "transfer", fmt.Sprintf("transfer %d is already reversed", t.ID))
	}
	if t.Card != "" {
		c, ok := tx.Card(t.Card)
		if ok && (c.Status == store.CardReplaced || c.Status == store.CardClosed) {
			return nil, fault.E(fault.NotReversible, "transfer",
				fmt.Sprintf("card %s is %s: its money has moved on", c.Number, c.Status))
		}
	}
	entries := make([]store.Entry, len(t.Entries))
	for i, en := range t.Entries {
		if tx.AccountByID(en.Account) == nil {
			return nil, fault.E(fault.Internal, "transfer", fmt.Sprintf("account %d of transfer %d is not loaded", en.Account, t.ID))
		}
		entries[i] = store.Entry{Account: en.Account, Amount: -en.Amount}
	}
	id, err := tx.Post(store.Transfer{Kind: store.TransferReversal, Currency: t.Currency, Card: t.Card, Ref: t.ID,
		Amount: t.Amount, Channel: t.Channel, Merchant: t.Merchant, Terminal: t.Terminal, Operator: o.teller,
		Memo: o.memo, Entries: entries}, time.Time{})
	if err != nil {
		return nil, err
	}
	return &ReverseResult{ID: strconv.FormatInt(id, 10), Reverses: strconv.FormatInt(t.ID, 10), Kind: t.Kind,
		Card: t.Card, Amount: t.Amount, Currency: t.Currency, At: tx.Now()}, nil
}

// Reverse undoes a payment, top-up or capture. A transfer is
// reversed at most once, and only while the money is still there to take
// back (a spent top-up cannot be reversed).
func (s *Service) Reverse(ctx context.Context, c Call, req ReverseRequest) (ledger.Outcome, error) {
	if err := CheckText("memo", req.Memo, MaxMemoLen, true); err != nil {
		return ledger.Outcome{}, err
	}
	t, err := s.st.GetTransfer(ctx, req.Transfer)
	if errors.Is(err, store.ErrNotFound) {
		return ledger.Outcome{}, fault.E(fault.TransferNotFound, "transfer", fmt.Sprintf("no transfer %d", req.Transfer))
	}
	if err != nil {
		return ledger.Outcome{}, err
	}
	if !reversible[t.Kind] {
		return ledger.Outcome{}, fault.E(fault.NotReversible, "transfer", fmt.Sprintf("a %s transfer cannot be reversed", t.Kind))
	}
	return s.submit(ctx, c, "transfers.reverse", strconv.FormatInt(t.ID, 10), &reverseOp{orig: t, memo: req.Memo, teller: c.Operator})
}
