package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/citycard/citycard/hub/internal/cards"
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

// TypeCardBalanceInquiry asks what a card can spend (a terminal's balance
// inquiry): the ledger's balance for a city card, the bank's for a bank card.
const TypeCardBalanceInquiry = "card.balance_inquiry.v1"

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
func (g *Gateway) callBank(ctx context.Context, typ, key string, fields, out any) error {
	if g.opts.BankPlugin == "" || g.plugins == nil {
		return fault.E(fault.ChannelNotAllowed, "", "this hub has no bank acquirer")
	}
	payload, _ := json.Marshal(fields)
	ctx, cancel := context.WithTimeout(ctx, g.bankTimeout())
	defer cancel()
	replies, err := g.Send(ctx, g.opts.BankPlugin, sdk.Message{Type: typ, IdempotencyKey: key, Payload: payload})
	if err != nil {
		return err
	}
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, out) != nil {
		return fault.E(fault.Internal, "", "the acquirer's answer to "+typ+" does not decode")
	}
	return nil
}

// askBank sends the acquirer plugin one message and reads its answer.
func (g *Gateway) askBank(ctx context.Context, typ, key string, fields map[string]any) (bankAuthorization, error) {
	var a bankAuthorization
	err := g.callBank(ctx, typ, key, fields, &a)
	return a, err
}

// authoriseToken has the acquirer authorise amount on a linked bank card's
// token under key; it returns the answer, or the decline's registry code.
func (g *Gateway) authoriseToken(ctx context.Context, key, token string, amount int64, currency, merchant, terminal string) (bankAuthorization, string) {
	a, err := g.askBank(ctx, TypeBankAuthorize, key, map[string]any{"token": token, "amount": amount, "currency": currency,
		"merchant": merchant, "terminal": g.acquirerTerminal(terminal)})
	switch {
	case err != nil:
		g.log.Warn("gateway: a linked bank card was not authorised", "key", key, "err", err)
		return a, fault.BankUnavailable
	case a.Status != "approved":
		return a, bankDecline(a.ResponseCode)
	}
	return a, ""
}

// reverseAtBank has the acquirer reverse the authorisation it made under
// authKey (it stores and forwards the reversal until the switch has it).
func (g *Gateway) reverseAtBank(ctx context.Context, authKey string) error {
	var r struct {
		Status string `json:"status"`
	}
	if err := g.callBank(ctx, TypeBankReverse, "reverse:"+authKey, map[string]string{"authorization_key": authKey}, &r); err != nil {
		return fmt.Errorf("reverse the bank card's part: %w", err)
	}
	return nil
}

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
func (g *Gateway) bankHoldUse(ctx context.Context, plugin, typ string, c cards.Call, m sdk.Message, hold cards.PaymentResult, amount int64, currency string) (ledger.Outcome, error) {
	if out, ok, err := g.answered(ctx, c); err != nil || ok {
		return out, err
	}
	if currency == "" {
		currency = hold.Currency
	}
	if currency != hold.Currency {
		return ledger.Outcome{}, fault.E(fault.CurrencyMismatch, "currency", fmt.Sprintf("the pre-authorisation is in %s", hold.Currency))
	}
	key := bankKey(plugin, m.IdempotencyKey)
	if typ == TypeCardVoid {
		a, err := g.askBank(ctx, TypeBankCancel, key, map[string]any{"authorization_key": hold.BankKey, "kind": "preauth_cancel",
			"amount": hold.Amount, "currency": currency})
		if err != nil {
			return ledger.Outcome{}, err
		}
		if a.Status != "approved" {
			return ledger.Outcome{}, bankRefusal("cancellation", a)
		}
		return g.opts.Service.Record(ctx, c, "holds.void", hold.Card, &cards.HoldResult{Status: "voided", Card: hold.Card,
			Merchant: hold.Merchant, Amount: hold.Amount, Currency: currency, Legs: []cards.Leg{}})
	}
	if amount == 0 {
		amount = hold.Amount
	}
	if amount > hold.Amount {
		return ledger.Outcome{}, fault.E(fault.CaptureExceedsHold, "amount", fmt.Sprintf("capture of %d exceeds the hold of %d", amount, hold.Amount))
	}
	a, err := g.askBank(ctx, TypeBankComplete, key, map[string]any{"authorization_key": hold.BankKey, "amount": amount, "currency": currency})
	if err != nil {
		return ledger.Outcome{}, err
	}
	if a.Status != "approved" {
		return ledger.Outcome{}, bankRefusal("completion", a)
	}
	return g.opts.Service.BankCapture(ctx, c, cards.BankCaptureRequest{HoldAmount: hold.Amount,
		BankPaymentRequest: cards.BankPaymentRequest{MaskedCard: hold.Card, Channel: hold.Channel, Merchant: hold.Merchant,
			Terminal: hold.Terminal, Amount: amount, Currency: currency, AuthCode: a.AuthCode, RRN: a.RRN, BankKey: key}})
}

// bankUndo voids or refunds at the bank the part of a payment a bank card
// paid, before the ledger reverses the payment. The acquirer applies the
// reversal's key once, so a resend does not undo twice.
func (g *Gateway) bankUndo(ctx context.Context, plugin string, c cards.Call, orig cards.PaymentResult, kind string, amount int64) error {
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
	a, err := g.askBank(ctx, TypeBankCancel, bankKey(plugin, c.IdempotencyKey), map[string]any{"authorization_key": orig.BankKey,
		"kind": kind, "amount": bank, "currency": orig.Currency})
	if err != nil {
		return err
	}
	if a.Status != "approved" {
		return bankRefusal(kind, a)
	}
	return nil
}

// balanceInquiry answers card.balance_inquiry.v1.
func (g *Gateway) balanceInquiry(ctx context.Context, m sdk.Message) (ledger.Outcome, error) {
	var p struct {
		Card     string `json:"card"`
		Expiry   string `json:"expiry"`
		PINBlock string `json:"pin_block"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.InvalidJSON, err)
	}
	type answer struct {
		Status  string `json:"status"`
		Reason  string `json:"reason,omitempty"`
		Card    string `json:"card"`
		Balance *int64 `json:"balance,omitempty"`
	}
	var ans answer
	if g.opts.IssuerPrefix == "" || strings.HasPrefix(p.Card, g.opts.IssuerPrefix) {
		c, err := g.opts.Service.Get(ctx, p.Card)
		if err != nil {
			return ledger.Outcome{}, err
		}
		var available int64
		for _, pu := range c.Purses {
			available += pu.Available
		}
		ans = answer{Status: cards.Approved, Card: p.Card, Balance: &available}
	} else {
		fields := map[string]any{"pan": p.Card}
		if p.Expiry != "" {
			fields["expiry"] = p.Expiry
		}
		if p.PINBlock != "" {
			fields["pin_block"] = p.PINBlock
		}
		a, err := g.askBank(ctx, TypeBankBalance, m.IdempotencyKey, fields)
		ans.Card = cardcrypto.MaskPAN(p.Card)
		switch {
		case err != nil:
			ans.Status, ans.Reason = cards.Declined, fault.BankUnavailable
		case a.Status != "approved":
			ans.Status, ans.Reason = cards.Declined, bankDecline(a.ResponseCode)
		default:
			ans.Status, ans.Balance = cards.Approved, a.Balance
		}
	}
	body, err := json.Marshal(ans)
	if err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.Internal, err)
	}
	return ledger.Outcome{Status: 200, Body: body}, nil
}

// VirtualTerminal is the terminal id (field 41) the hub gives the acquirer
// for a bank card payment made without one: a linked bank card paying a
// hospital bill.
const VirtualTerminal = "CCHUB001"

func (g *Gateway) acquirerTerminal(t string) string {
	if t == "" {
		return VirtualTerminal
	}
	return t
}
