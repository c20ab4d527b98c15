package payments

import (
	"context"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
)

// hold applies card.hold.v1, a pre-authorisation: a city card's purses
// are held in the ledger; a bank card is held at its bank.
func (p *Processor) hold(ctx context.Context, r request) (ledger.Outcome, error) {
	channel, err := p.channel(r.plugin, "hold money on cards")
	if err != nil {
		return ledger.Outcome{}, err
	}
	in, err := decode[sdk.CardHold](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if p.isBankCard(in.Card) {
		return p.bankPayment(ctx, r.plugin, channel, r.call, r.msg, bankCard{Card: in.Card, Expiry: in.Expiry, Merchant: in.Merchant,
			Terminal: in.Terminal, Amount: in.Amount, Currency: in.Currency, PINBlock: in.PINBlock, preauth: true})
	}
	return p.opts.Service.Hold(ctx, r.call, cards.HoldRequest{PaymentRequest: cards.PaymentRequest{Card: in.Card, Channel: channel,
		Merchant: in.Merchant, Terminal: in.Terminal, Amount: in.Amount, Currency: in.Currency, PIN: in.PIN}, ExpiresIn: in.ExpiresIn})
}
