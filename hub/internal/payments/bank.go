package payments

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// Messages of the bank acquirer plugin beyond authorisation.
const (
	TypeBankComplete = "unionpay.complete.v1"
	TypeBankCancel   = "unionpay.cancel.v1"
	TypeBankBalance  = "unionpay.balance.v1"
)

// bankAuthorization is the acquirer plugin's answer.
type bankAuthorization struct {
	Status       string `json:"status"`
	ResponseCode string `json:"response_code"`
	AuthCode     string `json:"auth_code"`
	RRN          string `json:"rrn"`
	Balance      *int64 `json:"balance"`
}

// bankKey names what plugin's request key asked of the acquirer plugin:
// the acquirer applies each such key once.
func bankKey(plugin, key string) string { return "bank:" + plugin + ":" + key }

// callBank sends the acquirer plugin one message and decodes its one reply
// into out.
func (p *Processor) callBank(ctx context.Context, typ, key string, fields, out any) error {
	if p.opts.BankPlugin == "" || p.plugins == nil {
		return fault.E(fault.ChannelNotAllowed, "", "this hub has no bank acquirer")
	}
	payload, _ := json.Marshal(fields)
	ctx, cancel := context.WithTimeout(ctx, p.bankTimeout())
	defer cancel()
	replies, err := p.send(ctx, p.opts.BankPlugin, sdk.Message{Type: typ, IdempotencyKey: key, Payload: payload})
	if err != nil {
		return err
	}
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, out) != nil {
		return fault.E(fault.Internal, "", "the acquirer's answer to "+typ+" does not decode")
	}
	return nil
}

// askBank sends the acquirer plugin one message and reads its answer.
func (p *Processor) askBank(ctx context.Context, typ, key string, fields map[string]any) (bankAuthorization, error) {
	var a bankAuthorization
	err := p.callBank(ctx, typ, key, fields, &a)
	return a, err
}

// authoriseToken has the acquirer authorise amount on a linked bank card's
// token under key; it returns the answer, or the decline's registry code.
func (p *Processor) authoriseToken(ctx context.Context, key, token string, amount int64, currency, merchant, terminal string) (bankAuthorization, string) {
	a, err := p.askBank(ctx, TypeBankAuthorize, key, map[string]any{"token": token, "amount": amount, "currency": currency,
		"merchant": merchant, "terminal": p.acquirerTerminal(terminal)})
	switch {
	case err != nil:
		p.log.Warn("payments: a linked bank card was not authorised", "key", key, "err", err)
		return a, fault.BankUnavailable
	case a.Status != "approved":
		return a, bankDecline(a.ResponseCode)
	}
	return a, ""
}

// reverseAtBank has the acquirer reverse the authorisation it made under
// authKey (it stores and forwards the reversal until the switch has it).
func (p *Processor) reverseAtBank(ctx context.Context, authKey string) error {
	var r struct {
		Status string `json:"status"`
	}
	if err := p.callBank(ctx, TypeBankReverse, "reverse:"+authKey, map[string]string{"authorization_key": authKey}, &r); err != nil {
		return fmt.Errorf("reverse the bank card's part: %w", err)
	}
	return nil
}

// abandonAtBank reverses at the acquirer an authorisation the hub gave up
// on, asking again while the acquirer does not answer (its plugin may be
// down for a while, restarting with backoff).
func (p *Processor) abandonAtBank(ctx context.Context, authKey, masked string) {
	wait := time.Second
	deadline := time.Now().Add(abandonFor)
	for {
		err := p.reverseAtBank(ctx, authKey)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.log.Error("payments: a bank authorisation given up on could not be reversed", "card", masked,
				"auth_key", authKey, "err", err)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.quit:
			t.Stop()
			p.log.Error("payments: the hub stopped before a bank authorisation given up on was reversed", "card", masked,
				"auth_key", authKey, "err", err)
			return
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// abandonFor is how long the hub keeps asking the acquirer to reverse an
// authorisation it gave up on.
const abandonFor = 10 * time.Minute

// bankRefusal is the error for an acquirer's decline of a completion,
// cancellation, void or refund: the registry's code for its answer.
func bankRefusal(what string, a bankAuthorization) error {
	code := bankDecline(a.ResponseCode)
	if code == fault.BankUnavailable {
		return fault.E(fault.Unavailable, "", fmt.Sprintf("the bank did not answer the %s in time; send it again", what))
	}
	return fault.E(code, "", fmt.Sprintf("the bank declined the %s (response code %s)", what, a.ResponseCode))
}

// bankHoldUse completes (card.capture.v1) or cancels (card.void.v1) a bank
// card's pre-authorisation at the acquirer, and records the outcome: a
// completion posts what the acquirer now owes the merchant.
func (p *Processor) bankHoldUse(ctx context.Context, plugin, typ string, c cards.Call, m sdk.Message, hold cards.PaymentResult, amount int64, currency string) (ledger.Outcome, error) {
	if out, ok, err := p.answered(ctx, c); err != nil || ok {
		return out, err
	}
	if currency == "" {
		currency = hold.Currency
	}
	if currency != hold.Currency {
		return ledger.Outcome{}, fault.E(fault.CurrencyMismatch, "currency", fmt.Sprintf("the pre-authorisation is in %s", hold.Currency))
	}
	key := bankKey(plugin, m.IdempotencyKey)
	if typ == sdk.TypeCardVoid {
		a, err := p.askBank(ctx, TypeBankCancel, key, map[string]any{"authorization_key": hold.BankKey, "kind": "preauth_cancel",
			"amount": hold.Amount, "currency": currency})
		if err != nil {
			return ledger.Outcome{}, err
		}
		if a.Status != "approved" {
			return ledger.Outcome{}, bankRefusal("cancellation", a)
		}
		return p.opts.Service.Record(ctx, c, "holds.void", hold.Card, &cards.HoldResult{Status: "voided", Card: hold.Card,
			Merchant: hold.Merchant, Amount: hold.Amount, Currency: currency, Legs: []cards.Leg{}})
	}
	if amount == 0 {
		amount = hold.Amount
	}
	if amount > hold.Amount {
		return ledger.Outcome{}, fault.E(fault.CaptureExceedsHold, "amount", fmt.Sprintf("capture of %d exceeds the hold of %d", amount, hold.Amount))
	}
	a, err := p.askBank(ctx, TypeBankComplete, key, map[string]any{"authorization_key": hold.BankKey, "amount": amount, "currency": currency})
	if err != nil {
		return ledger.Outcome{}, err
	}
	if a.Status != "approved" {
		return ledger.Outcome{}, bankRefusal("completion", a)
	}
	return p.opts.Service.BankCapture(ctx, c, cards.BankCaptureRequest{HoldAmount: hold.Amount,
		BankPaymentRequest: cards.BankPaymentRequest{MaskedCard: hold.Card, Channel: hold.Channel, Merchant: hold.Merchant,
			Terminal: hold.Terminal, Amount: amount, Currency: currency, AuthCode: a.AuthCode, RRN: a.RRN, BankKey: key}})
}

// bankUndo voids or refunds at the bank the part of a payment a bank card
// paid, before the ledger reverses the payment. The acquirer applies the
// reversal's key once, so a resend does not undo twice.
func (p *Processor) bankUndo(ctx context.Context, plugin string, c cards.Call, orig cards.PaymentResult, kind string, amount int64) error {
	if kind == "" {
		kind = "void"
	}
	var bank int64
	for _, l := range orig.Legs {
		if l.Purse == cards.LegBankCard {
			bank += l.Amount
		}
	}
	if bank == 0 {
		return nil
	}
	if amount > 0 {
		bank = amount
	}
	a, err := p.askBank(ctx, TypeBankCancel, bankKey(plugin, c.IdempotencyKey), map[string]any{"authorization_key": orig.BankKey,
		"kind": kind, "amount": bank, "currency": orig.Currency})
	if err != nil {
		return err
	}
	if a.Status != "approved" {
		return bankRefusal(kind, a)
	}
	return nil
}

// VirtualTerminal is the terminal id (field 41) the hub gives the acquirer
// for a bank card payment made without one: a linked bank card paying a
// hospital bill.
const VirtualTerminal = "CCHUB001"

func (p *Processor) acquirerTerminal(t string) string {
	if t == "" {
		return VirtualTerminal
	}
	return t
}

// bankCard is a card.payment.v1 for a bank card.
type bankCard struct {
	Card, Expiry, Merchant, Terminal, Currency string
	PINBlock                                   string
	Amount                                     int64
	preauth                                    bool // a pre-authorisation (card.hold.v1)
}

// Messages of the bank acquirer plugin (plugins/unionpay).
const (
	TypeBankAuthorize = "unionpay.authorize.v1"
	TypeBankReverse   = "unionpay.reverse.v1"
)

// bankPayment has the bank acquirer plugin authorise a bank card, then
// records its answer in the ledger under the submitting plugin's key. A
// resend of the same payment gets the recorded answer without the acquirer
// being asked again (and the acquirer applies its own key once too); if
// the approval cannot be recorded, the authorisation is reversed.
func (p *Processor) bankPayment(ctx context.Context, plugin, channel string, c cards.Call, m sdk.Message, b bankCard) (ledger.Outcome, error) {
	masked := cardcrypto.MaskPAN(b.Card)
	decline := func(reason string) (ledger.Outcome, error) {
		return p.opts.Service.BankPayment(ctx, c, cards.BankPaymentRequest{MaskedCard: masked, Channel: channel,
			Merchant: b.Merchant, Terminal: b.Terminal, Amount: b.Amount, Currency: b.Currency, Reason: reason})
	}
	if pol, ok := p.opts.Service.Catalog().Policy(channel); !ok || !pol.AcceptsCard(catalog.BankCard) {
		return decline(fault.ChannelNotAllowed)
	}
	if p.opts.BankPlugin == "" || p.plugins == nil {
		return decline(fault.ChannelNotAllowed)
	}
	if out, ok, err := p.answered(ctx, c); err != nil || ok {
		return out, err
	}
	if err := p.opts.Service.CheckAcceptor(ctx, b.Merchant, b.Terminal); err != nil {
		return decline(fault.CodeOf(err))
	}
	if b.Expiry == "" || b.Terminal == "" {
		// The acquirer needs both; a channel that cannot give them does
		// not take bank cards.
		return decline(fault.InvalidRequest)
	}
	authKey := bankKey(plugin, m.IdempotencyKey)
	fields := map[string]any{"pan": b.Card, "expiry": b.Expiry, "amount": b.Amount, "currency": b.Currency,
		"merchant": b.Merchant, "terminal": p.acquirerTerminal(b.Terminal)}
	if b.PINBlock != "" {
		fields["pin_block"] = b.PINBlock
	}
	if b.preauth {
		fields["transaction"] = "preauth"
	}
	auth, err := p.askBank(ctx, TypeBankAuthorize, authKey, fields)
	if err != nil {
		// No answer from the acquirer: the payment is declined. The
		// authorisation may still reach the acquirer (the router redelivers
		// it once the plugin is back), so it is reversed by its key: the
		// acquirer undoes what it authorised, or, not having seen the key
		// yet, declines the authorisation when it comes.
		p.log.Warn("payments: bank card not authorised", "plugin", p.opts.BankPlugin, "card", masked, "err", err)
		bctx := context.WithoutCancel(ctx)
		if !p.background(func() { p.abandonAtBank(bctx, authKey, masked) }) {
			p.log.Error("payments: the hub is stopping: a bank authorisation given up on is not reversed", "card", masked, "auth_key", authKey)
		}
		if fault.CodeOf(err) == fault.Internal {
			return decline(fault.Internal)
		}
		return decline(fault.Unavailable)
	}
	if auth.Status != "approved" {
		return decline(bankDecline(auth.ResponseCode))
	}
	if b.preauth {
		// A bank card's pre-authorisation moves no money in the ledger
		// until it is completed: its answer is all the hub keeps.
		return p.opts.Service.Record(ctx, c, "holds.create", masked, &cards.PaymentResult{Status: cards.Approved,
			Card: masked, Channel: channel, Merchant: b.Merchant, Terminal: b.Terminal, Amount: b.Amount, Currency: b.Currency,
			Legs: []cards.Leg{{Purse: cards.LegBankCard, Amount: b.Amount}}, BankKey: authKey, At: time.Now().UTC()})
	}
	out, err := p.opts.Service.BankPayment(ctx, c, cards.BankPaymentRequest{MaskedCard: masked, Channel: channel,
		Merchant: b.Merchant, Terminal: b.Terminal, Amount: b.Amount, Currency: b.Currency, Approved: true,
		AuthCode: auth.AuthCode, RRN: auth.RRN, BankKey: authKey})
	if err != nil {
		if rerr := p.reverseAtBank(context.WithoutCancel(ctx), authKey); rerr != nil {
			p.log.Error("payments: a bank authorisation could not be recorded nor reversed", "card", masked,
				"auth_key", authKey, "err", err, "reverse_err", rerr)
		}
		return ledger.Outcome{}, err
	}
	return out, nil
}

// bankTimeout bounds one call to the bank acquirer plugin.
func (p *Processor) bankTimeout() time.Duration {
	if p.opts.BankTimeout > 0 {
		return p.opts.BankTimeout
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
