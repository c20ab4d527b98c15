package cards

import (
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// Reasons a card is on the transit deny list, the list offline validators
// check a card against when they cannot ask the hub.
const (
	DenyLost     = "card_lost"
	DenyFrozen   = "card_frozen"
	DenyClosed   = "card_closed"
	DenyReplaced = "card_replaced"
	// DenyDebt: an offline tap took a purse below zero; the next top-up pays
	// the debt first and takes the card off the list.
	DenyDebt = "debt"
)

// Reasons a card comes off the list.
const (
	AllowActive      = "card_active"
	AllowDebtCleared = "debt_cleared"
)

// SyncDenyList puts card c on the deny list, or takes it off, as its state
// in tx now says: a card that is not active is on the list for its status,
// an active card with a purse below zero is on it for debt, and any other
// card is off it. Every op that changes a card's status or balance in a way
// that can matter calls it last, in the same batch, so the list and the
// cards never disagree.
func SyncDenyList(tx *ledger.Tx, c store.Card, p catalog.Product) {
	reason := ""
	switch c.Status {
	case store.CardLost:
		reason = DenyLost
	case store.CardFrozen:
		reason = DenyFrozen
	case store.CardClosed:
		reason = DenyClosed
	case store.CardReplaced:
		reason = DenyReplaced
	default:
		for _, pu := range p.Purses {
			if a := tx.Account(PurseCode(c.Number, pu.Name)); a != nil && ledger.Balance(*a) < 0 {
				reason = DenyDebt
				break
			}
		}
	}
	if reason != "" {
		tx.Deny(c.Number, reason)
		return
	}
	if was, ok := tx.Denied(c.Number); ok {
		why := AllowActive
		if was.Reason == DenyDebt {
			why = AllowDebtCleared
		}
		tx.Allow(c.Number, why)
	}
}
