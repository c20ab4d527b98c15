package gateway

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
	"github.com/citycard/citycard/schemas"
)

// SagaSplitPayment is the kind of the saga of a payment a city card and
// its linked bank card share.
const SagaSplitPayment = "split_payment"

// TypeBankTokenize asks the bank acquirer plugin for a token standing for
// a bank card (unionpay.tokenize.v1).
const TypeBankTokenize = "unionpay.tokenize.v1"

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

// sagaRecord keeps a saga's row and writes it over the version it read.
type sagaRecord struct {
	g   *Gateway
	row store.Saga
}

// save writes data (and state) over the version read; a conflict means
// another node's recovery took the saga over.
func (r *sagaRecord) save(ctx context.Context, state string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fault.Wrap(fault.Internal, err)
	}
	row := r.row
	row.State, row.Data, row.UpdatedAt = state, b, time.Now().UTC()
	up, err := r.g.opts.Sagas.UpdateSaga(context.WithoutCancel(ctx), row)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fault.E(fault.InProgress, "", "the payment was taken over by the hub's recovery; ask again")
		}
		return fault.Wrap(fault.Unavailable, err)
	}
	r.row = up
	return nil
}

// startSaga creates the saga of operator's request key, or finds it. A
// saga that has ended gives its recorded answer (done is true); an open one
// is an in_progress error.
func (g *Gateway) startSaga(ctx context.Context, c cards.Call, kind string, data any) (*sagaRecord, *ledger.Outcome, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, nil, fault.Wrap(fault.Internal, err)
	}
	now := time.Now().UTC()
	row, created, err := g.opts.Sagas.CreateSaga(ctx, store.Saga{Operator: c.Operator, Key: c.IdempotencyKey, Kind: kind,
		State: store.SagaRunning, Data: b, CreatedAt: now})
	if err != nil {
		return nil, nil, fault.Wrap(fault.Unavailable, err)
	}
	if created {
		return &sagaRecord{g: g, row: row}, nil, nil
	}
	if out, ok, err := g.answered(ctx, c); err != nil {
		return nil, nil, err
	} else if ok && !row.Open() {
		return nil, &out, nil
	}
	return nil, nil, fault.E(fault.InProgress, "idempotency_key",
		fmt.Sprintf("the request with key %q is still being carried out; ask again", c.IdempotencyKey))
}

// answered is the answer recorded for c's request, if there is one.
func (g *Gateway) answered(ctx context.Context, c cards.Call) (ledger.Outcome, bool, error) {
	body, ok, err := g.opts.Service.Answer(ctx, c.Operator, c.IdempotencyKey)
	if err != nil || !ok {
		return ledger.Outcome{}, false, err
	}
	return ledger.Outcome{Status: 200, Body: body, Replayed: true}, true, nil
}

// fallsBack reports whether a card short of the amount on channel may
// have its linked bank card pay the rest.
func (g *Gateway) fallsBack(channel string) bool {
	if g.opts.Sagas == nil || g.opts.BankPlugin == "" || g.plugins == nil {
		return false
	}
	pol, ok := g.opts.Service.Catalog().Policy(channel)
	return ok && pol.BankFallback
}

// linkedBankCard returns the bank card a city card pays its shortfall
// with, if the holder linked one.
func (g *Gateway) linkedBankCard(ctx context.Context, card string) (store.LinkedBankCard, bool, error) {
	l, err := g.opts.Sagas.LinkedBankCard(ctx, card)
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
func (g *Gateway) splitPayment(ctx context.Context, plugin string, c cards.Call, req cards.PaymentRequest, link store.LinkedBankCard) (ledger.Outcome, error) {
	if out, ok, err := g.answered(ctx, c); err != nil || ok {
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
	out, err := g.opts.Service.Hold(ctx, hc, cards.HoldRequest{PaymentRequest: hreq, UpTo: true,
		ExpiresIn: int64(g.splitHoldTTL() / time.Second), Saga: start})
	if err != nil || out.Replayed {
		// Nothing was held, or an earlier request with this key holds it
		// and carries the saga on.
		return g.splitNotOwned(ctx, c, s, out, err)
	}
	row, err := g.opts.Sagas.GetSaga(ctx, c.Operator, c.IdempotencyKey)
	if err != nil {
		// A decline before the writer (a PIN required and not given) starts
		// no saga: nothing was taken.
		var held cards.PaymentResult
		if errors.Is(err, store.ErrNotFound) && json.Unmarshal(out.Body, &held) == nil && held.Status == cards.Declined {
			return g.opts.Service.Decline(ctx, c, req, held.Reason)
		}
		return ledger.Outcome{}, fault.Wrap(fault.Unavailable, err)
	}
	rec := &sagaRecord{g: g, row: row}
	if refused != "" {
		return g.undoSplit(ctx, rec, c, s, refused, nil)
	}
	if s.BankAmount > 0 {
		r := s.Request
		a, reason := g.authoriseToken(ctx, s.bankKey(c.IdempotencyKey), s.Token, s.BankAmount, r.Currency, r.Merchant, r.Terminal)
		if reason != "" {
			return g.undoSplit(ctx, rec, c, s, reason, nil)
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
		return g.undoSplit(ctx, rec, c, s, fault.Internal, err)
	}
	out, err = g.opts.Service.PaySplit(ctx, c, cards.SplitPaymentRequest{PaymentRequest: req, Holds: holds,
		BankAmount: s.BankAmount, MaskedBankCard: s.MaskedBank, AuthCode: s.AuthCode, RRN: s.RRN, BankKey: s.bankKey(c.IdempotencyKey),
		EndSaga: &store.SagaState{Operator: c.Operator, Key: c.IdempotencyKey, State: store.SagaDone, Data: ended}})
	if err != nil {
		return g.undoSplit(ctx, rec, c, s, fault.Interrupted, err)
	}
	return out, nil
}

func (g *Gateway) splitHoldTTL() time.Duration { return 10 * time.Minute }

// splitNotOwned answers a split payment whose hold this request did not
// place: the hold failed (err), or an earlier request with the same key
// placed it and owns the saga.
func (g *Gateway) splitNotOwned(ctx context.Context, c cards.Call, s *splitSaga, hold ledger.Outcome, err error) (ledger.Outcome, error) {
	row, gerr := g.opts.Sagas.GetSaga(ctx, c.Operator, c.IdempotencyKey)
	switch {
	case gerr == nil && row.Open():
		return ledger.Outcome{}, fault.E(fault.InProgress, "idempotency_key",
			fmt.Sprintf("the request with key %q is still being carried out; ask again", c.IdempotencyKey))
	case gerr == nil:
		if out, ok, aerr := g.answered(ctx, c); aerr != nil || ok {
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
		return g.opts.Service.Decline(ctx, c, s.Request, held.Reason)
	}
	// The hold was refused before anything was taken (an unknown merchant),
	// or the ledger could not say: an error about the request itself is
	// the payment's decline; a failure of the hub is returned.
	if code := fault.CodeOf(err); answerable(code) {
		return g.opts.Service.Decline(ctx, c, s.Request, code)
	}
	return ledger.Outcome{}, err
}

// bankTimeout bounds one call to the bank acquirer plugin.
func (g *Gateway) bankTimeout() time.Duration {
	if g.opts.BankTimeout > 0 {
		return g.opts.BankTimeout
	}
	return 30 * time.Second
}

// bankDecline is the registry code of the bank's decline: the holder sees
// why (insufficient funds, expired card…), else bank_declined.
func bankDecline(rc string) string {
	if rc == "68" || rc == "91" {
		// The switch did not answer: the acquirer reverses what it sent.
		return fault.BankUnavailable
	}
	code := declineCode(rc)
	if code == fault.RiskDeclined {
		return fault.BankDeclined
	}
	return code
}

// undoSplit declines the payment with reason and undoes its legs: the
// decline is recorded first (the holder's answer), then the bank's part is
// reversed and the hold released. What cannot be undone now is left to
// the recovery, with the saga compensating. A payment found posted is not
// undone: its answer stands.
func (g *Gateway) undoSplit(ctx context.Context, rec *sagaRecord, c cards.Call, s *splitSaga, reason string, cause error) (ledger.Outcome, error) {
	ctx = context.WithoutCancel(ctx)
	if cause != nil {
		g.log.Warn("gateway: split payment undone", "key", c.IdempotencyKey, "reason", reason, "err", cause)
	}
	s.Reason = reason
	if err := rec.save(ctx, store.SagaCompensating, s); err != nil {
		return ledger.Outcome{}, err
	}
	out, posted, err := g.declineSplit(ctx, c, s)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if posted {
		_ = rec.save(ctx, store.SagaDone, s)
		return out, nil
	}
	if err := g.compensateSplit(ctx, c.IdempotencyKey, s); err != nil {
		g.log.Error("gateway: split payment not yet undone; recovery will finish it", "key", c.IdempotencyKey, "err", err)
		return out, nil
	}
	if err := rec.save(ctx, store.SagaUndone, s); err != nil {
		g.log.Warn("gateway: split payment undone, saga not closed", "key", c.IdempotencyKey, "err", err)
	}
	return out, nil
}

// declineSplit records the decline as the payment's answer. If the
// payment was posted after all, that answer stands and posted is true.
func (g *Gateway) declineSplit(ctx context.Context, c cards.Call, s *splitSaga) (ledger.Outcome, bool, error) {
	reason := s.Reason
	if reason == "" || !answerable(reason) {
		reason = fault.Interrupted
	}
	c.RequestHash = s.Hash
	out, err := g.opts.Service.Decline(ctx, c, s.Request, reason)
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
func (g *Gateway) compensateSplit(ctx context.Context, key string, s *splitSaga) error {
	if s.Step == stepBank || s.Step == stepPost {
		if err := g.reverseAtBank(ctx, s.bankKey(key)); err != nil {
			return err
		}
	}
	return g.releaseHold(ctx, s.Plugin, s.Hold, s.holdKey(key), "split-release:"+key, s.Hash)
}

// releaseHold voids hold id, or when id is 0 the hold plugin's request
// holdKey placed, if there is one and it is still pending, under the
// idempotency key releaseKey.
func (g *Gateway) releaseHold(ctx context.Context, plugin string, id int64, holdKey, releaseKey, hash string) error {
	if id == 0 {
		var err error
		id, err = g.approvedByKey(ctx, plugin, holdKey, "hold_key", fault.HoldNotFound, "hold")
		if fault.Is(err, fault.HoldNotFound) {
			return nil
		} else if err != nil {
			return err
		}
	}
	c := cards.Call{Operator: OperatorPrefix + plugin, Role: "plugin", IdempotencyKey: releaseKey, RequestHash: hash, Encode: encode}
	if _, err := g.opts.Service.Void(ctx, c, id); err != nil && !fault.Is(err, fault.HoldNotPending) {
		return fmt.Errorf("release hold %d: %w", id, err)
	}
	return nil
}

// answerable reports whether a refusal's code can stand as a payment's
// decline reason: a decline, or an error about the request itself (an
// unknown card or merchant). A failure of the hub or a partner cannot; the
// payment is then declined as interrupted.
func answerable(code string) bool {
	d, ok := schemas.LookupError(code)
	if !ok {
		return false
	}
	return d.Kind == schemas.KindDecline || (d.HTTPStatus >= 400 && d.HTTPStatus < 500 && code != fault.InProgress)
}

// RecoverSagas finishes or undoes the sagas no request is carrying on: those
// not written for staleAfter (a hub that stopped half-way). It returns how
// many it closed.
func (g *Gateway) RecoverSagas(ctx context.Context, staleAfter time.Duration) (int, error) {
	if g.opts.Sagas == nil {
		return 0, nil
	}
	open, err := g.opts.Sagas.OpenSagas(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, row := range open {
		if time.Since(row.UpdatedAt) < staleAfter {
			continue
		}
		var err error
		switch row.Kind {
		case SagaSplitPayment:
			err = g.recoverSplit(ctx, row)
		case SagaMedical:
			err = g.recoverMedical(ctx, row)
		default:
			continue
		}
		if err != nil {
			g.log.Warn("gateway: saga not recovered yet", "kind", row.Kind, "operator", row.Operator, "key", row.Key, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		n++
	}
	return n, firstErr
}

// recoverSplit closes a split payment a stopped request left open: posted
// stays posted; anything else is declined and undone.
func (g *Gateway) recoverSplit(ctx context.Context, row store.Saga) error {
	var s splitSaga
	if err := json.Unmarshal(row.Data, &s); err != nil {
		return fmt.Errorf("saga %s: %w", row.Key, err)
	}
	rec := &sagaRecord{g: g, row: row}
	if s.Reason == "" {
		s.Reason = fault.Interrupted
	}
	if err := rec.save(ctx, store.SagaCompensating, &s); err != nil {
		return err
	}
	c := cards.Call{Operator: row.Operator, Role: "plugin", IdempotencyKey: row.Key, RequestHash: s.Hash, Encode: encode}
	_, posted, err := g.declineSplit(ctx, c, &s)
	if err != nil {
		return err
	}
	if posted {
		return rec.save(ctx, store.SagaDone, &s)
	}
	if err := g.compensateSplit(ctx, row.Key, &s); err != nil {
		return err
	}
	g.log.Info("gateway: interrupted split payment undone", "key", row.Key, "step", s.Step)
	return rec.save(ctx, store.SagaUndone, &s)
}

// BankToken is the acquirer's token for a bank card and how the card may
// be shown.
type BankToken struct {
	Token     string `json:"token"`
	MaskedPAN string `json:"masked_pan"`
	Last4     string `json:"last4"`
}

// Tokenize has the bank acquirer plugin keep a bank card and give a token
// for it. The card number goes no further than the plugin's vault.
func (g *Gateway) Tokenize(ctx context.Context, pan, expiry string) (BankToken, error) {
	var t BankToken
	if err := g.callBank(ctx, TypeBankTokenize, "", map[string]string{"pan": pan, "expiry": expiry}, &t); err != nil {
		return BankToken{}, err
	}
	if t.Token == "" || len(t.Last4) != 4 {
		return BankToken{}, fault.E(fault.Internal, "", "the acquirer's token is not one")
	}
	return t, nil
}
