package payments

import (
	"context"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
)

// void applies card.void.v1: the plugin's hold, named by its message's
// key, is released. A void that finds no hold forestalls the key, so a
// hold still on its way holds nothing.
func (p *Processor) void(ctx context.Context, r request) (ledger.Outcome, error) {
	in, err := decode[sdk.CardVoid](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	hold, id, err := p.approvedOrForestalled(ctx, r.call, r.plugin, in.HoldKey, "hold_key", fault.HoldNotFound, "hold")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if id == 0 {
		// A bank card's pre-authorisation: cancelled at the bank.
		return p.bankHoldUse(ctx, r.plugin, sdk.TypeCardVoid, r.call, r.msg, hold, 0, "")
	}
	return p.opts.Service.Void(ctx, r.call, id)
}
