package payments

import (
	"context"
	"encoding/json"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// balanceInquiry answers card.balance_inquiry.v1: what a city card can
// spend in the ledger, or a bank card as its issuer says. It is a read.
func (p *Processor) balanceInquiry(ctx context.Context, r request) (ledger.Outcome, error) {
	in, err := decode[sdk.CardBalanceInquiry](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	var ans sdk.BalanceInquiryResult
	if !p.isBankCard(in.Card) {
		card, err := p.opts.Service.Get(ctx, in.Card)
		if err != nil {
			return ledger.Outcome{}, err
		}
		var available int64
		for _, pu := range card.Purses {
			available += pu.Available
		}
		ans = sdk.BalanceInquiryResult{Status: cards.Approved, Card: in.Card, Balance: &available}
	} else {
		fields := map[string]any{"pan": in.Card}
		if in.Expiry != "" {
			fields["expiry"] = in.Expiry
		}
		if in.PINBlock != "" {
			fields["pin_block"] = in.PINBlock
		}
		a, err := p.askBank(ctx, TypeBankBalance, r.msg.IdempotencyKey, fields)
		ans.Card = cardcrypto.MaskPAN(in.Card)
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
