package payments

import (
	"context"
	"errors"
	"strings"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
)

// payment applies card.payment.v1: a bank card goes to the acquirer; a
// city card pays from its purses and, where the channel lets a linked bank
// card pay a shortfall, from that card too (a split payment).
func (p *Processor) payment(ctx context.Context, r request) (ledger.Outcome, error) {
	channel, err := p.channel(r.plugin, "take card payments")
	if err != nil {
		return ledger.Outcome{}, err
	}
	in, err := decode[sdk.CardPayment](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if p.isBankCard(in.Card) {
		return p.bankPayment(ctx, r.plugin, channel, r.call, r.msg, bankCard{Card: in.Card, Expiry: in.Expiry, Merchant: in.Merchant,
			Terminal: in.Terminal, Amount: in.Amount, Currency: in.Currency, PINBlock: in.PINBlock})
	}
	req := cards.PaymentRequest{Card: in.Card, Channel: channel, Merchant: in.Merchant,
		Terminal: in.Terminal, Amount: in.Amount, Currency: in.Currency, PIN: in.PIN}
	if !p.fallsBack(channel) {
		return p.opts.Service.Pay(ctx, r.call, req)
	}
	// Where a linked bank card may pay a shortfall, the card pays as
	// usual when it can; only a short card looks for a linked card.
	short := req
	short.ShortIsError = true
	out, err := p.opts.Service.Pay(ctx, r.call, short)
	if !errors.Is(err, cards.ErrShort) {
		return out, err
	}
	if link, ok, err := p.linkedBankCard(ctx, in.Card); err != nil {
		return ledger.Outcome{}, err
	} else if ok {
		return p.splitPayment(ctx, r.plugin, r.call, req, link)
	}
	return p.opts.Service.Pay(ctx, r.call, req)
}

// isBankCard reports whether card is not the city's: a bank card, which
// the acquirer answers for.
func (p *Processor) isBankCard(card string) bool {
	return p.opts.IssuerPrefix != "" && !strings.HasPrefix(card, p.opts.IssuerPrefix)
}
