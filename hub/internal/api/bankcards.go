package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// BankCardRequest is the body of POST /v1/cards/{number}/bank-card.
type BankCardRequest struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"`
}

// BankCardView is a city card's linked bank card: masked, never whole.
type BankCardView struct {
	Card      string    `json:"card"`
	MaskedPAN string    `json:"masked_pan"`
	Last4     string    `json:"last4"`
	LinkedAt  time.Time `json:"linked_at"`
}

func bankCardView(l store.LinkedBankCard) BankCardView {
	return BankCardView{Card: l.Card, MaskedPAN: l.MaskedPAN, Last4: l.Last4, LinkedAt: l.LinkedAt}
}

// linkBankCard links a bank card to a city card: the acquirer keeps the
// number and gives a token, which is all the hub stores.
func (s *server) linkBankCard(x *exchange) error {
	var req BankCardRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	number := x.r.PathValue("number")
	if _, err := cardcrypto.ParsePAN(req.PAN); err != nil {
		return fault.E(fault.LuhnFailed, "pan", "the bank card number is not valid: "+err.Error())
	}
	if _, err := cardcrypto.ParseExpiry(req.Expiry); err != nil {
		return fault.E(fault.InvalidRequest, "expiry", "expiry is YYMM: "+err.Error())
	}
	c, err := s.st.GetCard(x.r.Context(), number)
	if errors.Is(err, store.ErrNotFound) {
		return fault.E(fault.CardNotFound, "number", fmt.Sprintf("no card %s", number))
	} else if err != nil {
		return err
	}
	if c.Status != store.CardActive {
		return fault.E(fault.CardNotActive, "number", fmt.Sprintf("card %s is %s", number, c.Status))
	}
	if s.plugins == nil {
		return fault.E(fault.ChannelNotAllowed, "", "this hub has no bank acquirer to link bank cards with")
	}
	t, err := s.plugins.Tokenize(x.r.Context(), req.PAN, req.Expiry)
	if err != nil {
		return fromPlugin(err)
	}
	l := store.LinkedBankCard{Card: number, Token: t.Token, MaskedPAN: t.MaskedPAN, Last4: t.Last4, LinkedAt: s.now().UTC()}
	if err := s.st.LinkBankCard(x.r.Context(), l); err != nil {
		return err
	}
	_ = x.audit(number, nil)
	writeJSON(x.w, http.StatusOK, bankCardView(l))
	return nil
}

func (s *server) getBankCard(x *exchange) error {
	number := x.r.PathValue("number")
	l, err := s.st.LinkedBankCard(x.r.Context(), number)
	if errors.Is(err, store.ErrNotFound) {
		return fault.E(fault.NoLinkedBankCard, "number", fmt.Sprintf("card %s has no linked bank card", number))
	} else if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusOK, bankCardView(l))
	return nil
}

func (s *server) unlinkBankCard(x *exchange) error {
	if err := decodeStrict(x.body, &struct{}{}); err != nil {
		return err
	}
	number := x.r.PathValue("number")
	l, err := s.st.LinkedBankCard(x.r.Context(), number)
	if err == nil {
		err = s.st.UnlinkBankCard(x.r.Context(), number)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fault.E(fault.NoLinkedBankCard, "number", fmt.Sprintf("card %s has no linked bank card", number))
	} else if err != nil {
		return err
	}
	_ = x.audit(number, nil)
	writeJSON(x.w, http.StatusOK, bankCardView(l))
	return nil
}
