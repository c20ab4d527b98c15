package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// SagaSplitPayment is the kind of the saga of a payment a city card and
// its linked bank card share.
const SagaSplitPayment = "split_payment"

// Legs of a split payment, in the order they are taken.
const (
	stepHold = "hold" // the city card's part is being held
	stepBank = "bank" // the bank card is being asked for the rest
	stepPost = "post" // both approved: the payment is being posted
)

// splitSaga is the durable state of a split payment. It never holds a PIN
// or a bank card number: the bank card is its acquirer token.
type splitSaga struct {
	Plugin     string               `json:"plugin"`
	Request    cards.PaymentRequest `json:"request"`
	Hash       string               `json:"hash"`
	Token      string               `json:"token"`
	MaskedBank string               `json:"masked_bank"`
	Step       string               `json:"step"`
	Hold       int64                `json:"hold,omitempty"`
	CityAmount int64                `json:"city_amount"`
	BankAmount int64                `json:"bank_amount"`
	AuthCode   string               `json:"auth_code,omitempty"`
	RRN        string               `json:"rrn,omitempty"`
	Reason     string               `json:"reason,omitempty"`
}

func (s *splitSaga) holdKey(key string) string { return "split-hold:" + key }
func (s *splitSaga) bankKey(key string) string { return bankKey(s.Plugin, key) }

// fallsBack reports whether a card short of the amount on channel may
// have its linked bank card pay the rest.
func (p *Processor) fallsBack(channel string) bool {
	if p.opts.Sagas == nil || p.opts.BankPlugin == "" || p.plugins == nil {
		return false
	}
	pol, ok := p.opts.Service.Catalog().Policy(channel)
	return ok && pol.BankFallback
}

// linkedBankCard returns the bank card a city card pays its shortfall
// with, if the holder linked one.
func (p *Processor) linkedBankCard(ctx context.Context, card string) (store.LinkedBankCard, bool, error) {
	l, err := p.opts.Sagas.LinkedBankCard(ctx, card)
	if errors.Is(err, store.ErrNotFound) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fault.Wrap(fault.Unavailable, err)
	}
	return l, true, nil
}

// splitPayment pays with the city card what its purses hold and with the
// linked bank card the rest, as one payment answered under the request's
// key. Each leg is recorded in the saga before it is taken: a bank decline
// or timeout, or a hub stopped half-way, releases the city card's part and
// reverses the bank's, and the payment declines.
func (p *Processor) splitPayment(ctx context.Context, plugin string, c cards.Call, req cards.PaymentRequest, link store.LinkedBankCard) (ledger.Outcome, error) {
	if out, ok, err := p.answered(ctx, c); err != nil || ok {
		return out, err
	}
	pin := req.PIN
	req.PIN = ""
	s := &splitSaga{Plugin: plugin, Request: req, Hash: c.RequestHash, Token: link.Token, MaskedBank: link.MaskedPAN, Step: stepHold}
	// The saga is created in the same commit as the hold of the card's
	// part, with what the hold took: the payment waits on no commit of its
	// own before the bank is asked.
	refused := ""
	start := &cards.SagaStart{Operator: c.Operator, Key: c.IdempotencyKey, Kind: SagaSplitPayment,
		Data: func(held *cards.PaymentResult) []byte {
			switch {
			case held.Status == cards.Approved:
				s.Hold, _ = strconv.ParseInt(held.ID, 10, 64)
				s.CityAmount = held.Amount
			case held.Reason == fault.InsufficientFunds:
				// The purses hold nothing: the bank card pays it all.
			default:
				// The card itself is refused (frozen, wrong PIN…): no bank
				// card pays for a card that may not pay.
				refused = held.Reason
			}
			s.BankAmount = req.Amount - s.CityAmount
			if s.BankAmount > 0 && refused == "" {
				s.Step = stepBank
			}
			b, _ := json.Marshal(s)
			return b
		}}
	hc := c
	hc.IdempotencyKey = s.holdKey(c.IdempotencyKey)
	hreq := req
	hreq.PIN = pin
	out, err := p.opts.Service.Hold(ctx, hc, cards.HoldRequest{PaymentRequest: hreq, UpTo: true,
		ExpiresIn: int64(p.splitHoldTTL() / time.Second), Saga: start})
	if err != nil || out.Replayed {
		// Nothing was held, or an earlier request with this key holds it
		// and carries the saga on.
		return p.splitNotOwned(ctx, c, s, out, err)
	}
	row, err := p.opts.Sagas.GetSaga(ctx, c.Operator, c.IdempotencyKey)
	if err != nil {
		// A decline before the writer (a PIN required and not given) starts
		// no saga: nothing was taken.
		var held cards.PaymentResult
		if errors.Is(err, store.ErrNotFound) && json.Unmarshal(out.Body, &held) == nil && held.Status == cards.Declined {
			return p.opts.Service.Decline(ctx, c, req, held.Reason)
		}
		return ledger.Outcome{}, fault.Wrap(fault.Unavailable, err)
	}
	rec := &sagaRecord{p: p, row: row}
	if refused != "" {
		return p.undoSplit(ctx, rec, c, s, refused, nil)
	}
	if s.BankAmount > 0 {
		r := s.Request
		a, reason := p.authoriseToken(ctx, s.bankKey(c.IdempotencyKey), s.Token, s.BankAmount, r.Currency, r.Merchant, r.Terminal)
		if reason != "" {
			return p.undoSplit(ctx, rec, c, s, reason, nil)
		}
		s.AuthCode, s.RRN = a.AuthCode, a.RRN
	}
	// The posting is found by its key: no step is written before it.
	s.Step = stepPost
	var holds []int64
	if s.Hold != 0 {
		holds = []int64{s.Hold}
	}
	// The saga ends in the posting's own commit.
	ended, err := json.Marshal(s)
	if err != nil {
		return p.undoSplit(ctx, rec, c, s, fault.Internal, err)
	}
	out, err = p.opts.Service.PaySplit(ctx, c, cards.SplitPaymentRequest{PaymentRequest: req, Holds: holds,
		BankAmount: s.BankAmount, MaskedBankCard: s.MaskedBank, AuthCode: s.AuthCode, RRN: s.RRN, BankKey: s.bankKey(c.IdempotencyKey),
		EndSaga: &store.SagaState{Operator: c.Operator, Key: c.IdempotencyKey, State: store.SagaDone, Data: ended}})
	if err != nil {
		return p.undoSplit(ctx, rec, c, s, fault.Interrupted, err)
	}
	return out, nil
}

func (p *Processor) splitHoldTTL() time.Duration { return 10 * time.Minute }

// splitNotOwned answers a split payment whose hold this request did not
// place: the hold failed (err), or an earlier request with the same key
// placed it and owns the saga.
func (p *Processor) splitNotOwned(ctx context.Context, c cards.Call, s *splitSaga, hold ledger.Outcome, err error) (ledger.Outcome, error) {
	row, gerr := p.opts.Sagas.GetSaga(ctx, c.Operator, c.IdempotencyKey)
	switch {
	case gerr == nil && row.Open():
		return ledger.Outcome{}, fault.E(fault.InProgress, "idempotency_key",
			fmt.Sprintf("the request with key %q is still being carried out; ask again", c.IdempotencyKey))
	case gerr == nil:
		if out, ok, aerr := p.answered(ctx, c); aerr != nil || ok {
			return out, aerr
		}
		return ledger.Outcome{}, fault.E(fault.InProgress, "idempotency_key", "the payment is being closed; ask again")
	case !errors.Is(gerr, store.ErrNotFound):
		return ledger.Outcome{}, fault.Wrap(fault.Unavailable, gerr)
	case err == nil:
		// The hold was answered before this request, without a saga: the
		// answer stands for the payment too.
		var held cards.PaymentResult
		_ = json.Unmarshal(hold.Body, &held)
		return p.opts.Service.Decline(ctx, c, s.Request, held.Reason)
	}
	// The hold was refused before anything was taken (an unknown merchant),
	// or the ledger could not say: an error about the request itself is
	// the payment's decline; a failure of the hub is returned.
	if code := fault.CodeOf(err); answerable(code) {
		return p.opts.Service.Decline(ctx, c, s.Request, code)
	}
	return ledger.Outcome{}, err
}

// undoSplit declines the payment with reason and undoes its legs: the
// decline is recorded first (the holder's answer), then the bank's part is
// reversed and the hold released. What cannot be undone now is left to
// the recovery, with the saga compensating. A payment found posted is not
// undone: its answer stands.
func (p *Processor) undoSplit(ctx context.Context, rec *sagaRecord, c cards.Call, s *splitSaga, reason string, cause error) (ledger.Outcome, error) {
	ctx = context.WithoutCancel(ctx)
	if cause != nil {
		p.log.Warn("payments: split payment undone", "key", c.IdempotencyKey, "reason", reason, "err", cause)
	}
	s.Reason = reason
	if err := rec.save(ctx, store.SagaCompensating, s); err != nil {
		return ledger.Outcome{}, err
	}
	out, posted, err := p.declineSplit(ctx, c, s)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if posted {
		_ = rec.save(ctx, store.SagaDone, s)
		return out, nil
	}
	if err := p.compensateSplit(ctx, c.IdempotencyKey, s); err != nil {
		p.log.Error("payments: split payment not yet undone; recovery will finish it", "key", c.IdempotencyKey, "err", err)
		return out, nil
	}
	if err := rec.save(ctx, store.SagaUndone, s); err != nil {
		p.log.Warn("payments: split payment undone, saga not closed", "key", c.IdempotencyKey, "err", err)
	}
	return out, nil
}

// declineSplit records the decline as the payment's answer. If the
// payment was posted after all, that answer stands and posted is true.
func (p *Processor) declineSplit(ctx context.Context, c cards.Call, s *splitSaga) (ledger.Outcome, bool, error) {
	reason := s.Reason
	if reason == "" || !answerable(reason) {
		reason = fault.Interrupted
	}
	c.RequestHash = s.Hash
	out, err := p.opts.Service.Decline(ctx, c, s.Request, reason)
	if err != nil {
		return out, false, err
	}
	var r cards.PaymentResult
	if json.Unmarshal(out.Body, &r) == nil && r.Status == cards.Approved {
		return out, true, nil
	}
	return out, false, nil
}

// compensateSplit reverses the bank's part (if it may have been asked)
// and releases the hold (if one was placed). Both are safe to repeat.
func (p *Processor) compensateSplit(ctx context.Context, key string, s *splitSaga) error {
	if s.Step == stepBank || s.Step == stepPost {
		if err := p.reverseAtBank(ctx, s.bankKey(key)); err != nil {
			return err
		}
	}
	return p.releaseHold(ctx, s.Plugin, s.Hold, s.holdKey(key), "split-release:"+key, s.Hash)
}

// releaseHold voids hold id, or when id is 0 the hold plugin's request
// holdKey placed, if there is one and it is still pending, under the
// idempotency key releaseKey.
func (p *Processor) releaseHold(ctx context.Context, plugin string, id int64, holdKey, releaseKey, hash string) error {
	if id == 0 {
		var err error
		id, err = p.approvedByKey(ctx, plugin, holdKey, "hold_key", fault.HoldNotFound, "hold")
		if fault.Is(err, fault.HoldNotFound) {
			return nil
		} else if err != nil {
			return err
		}
	}
	c := cards.Call{Operator: OperatorPrefix + plugin, Role: "plugin", IdempotencyKey: releaseKey, RequestHash: hash, Encode: encode}
	if _, err := p.opts.Service.Void(ctx, c, id); err != nil && !fault.Is(err, fault.HoldNotPending) {
		return fmt.Errorf("release hold %d: %w", id, err)
	}
	return nil
}

// recoverSplit closes a split payment a stopped request left open: posted
// stays posted; anything else is declined and undone.
func (p *Processor) recoverSplit(ctx context.Context, row store.Saga) error {
	var s splitSaga
	if err := json.Unmarshal(row.Data, &s); err != nil {
		return fmt.Errorf("saga %s: %w", row.Key, err)
	}
	rec := &sagaRecord{p: p, row: row}
	if s.Reason == "" {
		s.Reason = fault.Interrupted
	}
	if err := rec.save(ctx, store.SagaCompensating, &s); err != nil {
		return err
	}
	c := cards.Call{Operator: row.Operator, Role: "plugin", IdempotencyKey: row.Key, RequestHash: s.Hash, Encode: encode}
	_, posted, err := p.declineSplit(ctx, c, &s)
	if err != nil {
		return err
	}
	if posted {
		return rec.save(ctx, store.SagaDone, &s)
	}
	if err := p.compensateSplit(ctx, row.Key, &s); err != nil {
		return err
	}
	p.log.Info("payments: interrupted split payment undone", "key", row.Key, "step", s.Step)
	return rec.save(ctx, store.SagaUndone, &s)
}
