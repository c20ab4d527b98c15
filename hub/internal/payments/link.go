package payments

import (
	"context"

	"github.com/citycard/citycard/hub/internal/fault"
)

// TypeBankTokenize asks the bank acquirer plugin for a token standing for
// a bank card (unionpay.tokenize.v1).
const TypeBankTokenize = "unionpay.tokenize.v1"

// BankToken is the acquirer's token for a bank card and how the card may
// be shown.
type BankToken struct {
	Token     string `json:"token"`
	MaskedPAN string `json:"masked_pan"`
	Last4     string `json:"last4"`
}

// Tokenize has the bank acquirer plugin keep a bank card and give a token
// for it. The card number goes no further than the plugin's vault.
func (p *Processor) Tokenize(ctx context.Context, pan, expiry string) (BankToken, error) {
	var t BankToken
	if err := p.callBank(ctx, TypeBankTokenize, "", map[string]string{"pan": pan, "expiry": expiry}, &t); err != nil {
		return BankToken{}, err
	}
	if t.Token == "" || len(t.Last4) != 4 {
		return BankToken{}, fault.E(fault.Internal, "", "the acquirer's token is not one")
	}
	return t, nil
}
