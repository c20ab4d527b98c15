package payments

import (
	"context"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
)

// capture applies card.capture.v1: the plugin's hold, named by its
// message's key, is posted for its amount or less.
func (p *Processor) capture(ctx context.Context, r request) (ledger.Outcome, error) {
	in, err := decode[sdk.CardCapture](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	hold, id, err := p.approved(ctx, r.plugin, in.HoldKey, "hold_key", fault.HoldNotFound, "hold")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if id == 0 {
		// A bank card's pre-authorisation: held at the bank, not here.
		return p.bankHoldUse(ctx, r.plugin, sdk.TypeCardCapture, r.call, r.msg, hold, in.Amount, in.Currency)
	}
	return p.opts.Service.Capture(ctx, r.call, cards.CaptureRequest{Hold: id, Amount: in.Amount, Currency: in.Currency})
}
