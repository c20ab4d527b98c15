package payments

import (
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
)

// reversal applies card.reversal.v1: the plugin's payment, named by its
// message's key, is undone in the ledger, and its bank card's part at the
// bank. A reversal that finds no payment forestalls the key: a payment
// still on its way (its terminal reversed first) then takes nothing.
func (p *Processor) reversal(ctx context.Context, r request) (ledger.Outcome, error) {
	in, err := decode[sdk.CardReversal](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	c := r.call
	orig, id, err := p.approvedOrForestalled(ctx, c, r.plugin, in.PaymentKey, "payment_key", fault.TransferNotFound, "payment")
	if err == nil && id == 0 {
		err = notApproved(r.plugin, in.PaymentKey, "payment_key", fault.TransferNotFound, "payment")
	}
	if err != nil {
		return ledger.Outcome{}, err
	}
	if in.Amount != 0 && in.Amount != orig.Amount {
		// Part of a payment a bank card paid alone is refunded at the
		// bank, which keeps count of what is left to refund.
		if orig.BankKey == "" || len(orig.Legs) != 1 || in.Amount > orig.Amount || in.Kind != sdk.ReversalRefund {
			return ledger.Outcome{}, fault.E(fault.InvalidAmount, "amount",
				fmt.Sprintf("only the whole payment of %d can be undone, not %d; a bank card's payment can be refunded in part", orig.Amount, in.Amount))
		}
		if err := p.bankUndo(ctx, r.plugin, c, orig, in.Kind, in.Amount); err != nil {
			return ledger.Outcome{}, err
		}
		return p.opts.Service.BankRefund(ctx, c, cards.BankRefundRequest{Payment: id, Amount: in.Amount, Memo: in.Memo})
	}
	if orig.BankKey != "" {
		if err := p.bankUndo(ctx, r.plugin, c, orig, in.Kind, 0); err != nil {
			return ledger.Outcome{}, err
		}
	}
	return p.opts.Service.Reverse(ctx, c, cards.ReverseRequest{Transfer: id, Memo: in.Memo})
}
