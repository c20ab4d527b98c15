package cards

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
)

// statusOp moves a card between active, lost and frozen.
type statusOp struct {
	number string
	p      catalog.Product
	to     string
	from   []string // states the change is allowed from
}

func (o *statusOp) Prefetch(k *ledger.Keys) { k.Card(o.number) }

func (o *statusOp) Apply(tx *ledger.Tx) (any, error) {
	c, err := cardInTx(tx, o.number)
	if err != nil {
		return nil, err
	}
	if c.Status != o.to {
		allowed := false
		for _, f := range o.from {
			allowed = allowed || c.Status == f
		}
		if !allowed {
			return nil, fault.E(fault.CardNotActive, "card", fmt.Sprintf("card %s is %s and cannot become %s", c.Number, c.Status, o.to))
		}
		c.Status = o.to
		tx.PutCard(c)
		SyncDenyList(tx, c, o.p)
	}
	v := viewInTx(tx, c, o.p)
	return &v, nil
}

func (s *Service) changeStatus(ctx context.Context, c Call, number, action, to string, from ...string) (ledger.Outcome, error) {
	_, p, err := s.cardProduct(ctx, number, "number")
	if err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, action, number, &statusOp{number: number, p: p, to: to, from: from})
}

// ReportLoss freezes a card at once: every later payment declines with
// card_lost. Reporting a card lost twice is harmless.
func (s *Service) ReportLoss(ctx context.Context, c Call, number string) (ledger.Outcome, error) {
	return s.changeStatus(ctx, c, number, "cards.loss", store.CardLost, store.CardActive, store.CardFrozen)
}

// Freeze stops a card on risk's decision.
func (s *Service) Freeze(ctx context.Context, c Call, number string) (ledger.Outcome, error) {
	return s.changeStatus(ctx, c, number, "cards.freeze", store.CardFrozen, store.CardActive)
}

// Unfreeze lets a frozen card pay again. A lost card is not unfrozen: it is
// replaced.
func (s *Service) Unfreeze(ctx context.Context, c Call, number string) (ledger.Outcome, error) {
	return s.changeStatus(ctx, c, number, "cards.unfreeze", store.CardActive, store.CardFrozen)
}

// ReplaceRequest asks for a replacement card.
type ReplaceRequest struct {
	Card   string `json:"-"`
	Method string `json:"method,omitempty"` // how the new deposit is paid
}

// ReplaceResult is the new card; the old one is closed as replaced.
type ReplaceResult struct {
	CardView
	Old     string  `json:"replaces"`
	Moved   int64   `json:"moved"`
	Receipt Receipt `json:"receipt"`
}

type replaceOp struct {
	old    string
	p      catalog.Product
	method string
	prefix string
	teller string
}

func (o *replaceOp) Prefetch(k *ledger.Keys) {
	k.Card(o.old)
	k.Account(AccountCash, AccountBank, AccountForfeited)
}

func (o *replaceOp) Apply(tx *ledger.Tx) (any, error) {
	old, err := cardInTx(tx, o.old)
	if err != nil {
		return nil, err
	}
	switch old.Status {
	case store.CardActive, store.CardLost, store.CardFrozen:
	default:
		return nil, fault.E(fault.CardNotActive, "card", fmt.Sprintf("card %s is %s", old.Number, old.Status))
	}
	cur := old.Currency
	var entries []store.Entry
	var moved int64
	number, err := cardno.New(o.prefix, tx.NextCardSerial())
	if err != nil {
		return nil, fault.Wrap(fault.Internal, err)
	}
	nc := old
	nc.Number, nc.Status, nc.Replaces, nc.ReplacedBy, nc.Deposit = number, store.CardActive, old.Number, "", o.p.Deposit
	nc.IssuedAt = time.Time{}
	nc.PinTries = 0
	tx.PutCard(nc)
	openAccounts(tx, number, o.p)
	for _, pu := range o.p.Purses {
		from := tx.Account(PurseCode(old.Number, pu.Name))
		if from == nil {
			continue
		}
		if err := noOpenHolds(old.Number, from); err != nil {
			return nil, err
		}
		to := tx.Account(PurseCode(number, pu.Name))
		if b := ledger.Balance(*from); b != 0 {
			entries = append(entries, store.Entry{Account: from.ID, Amount: b}, store.Entry{Account: to.ID, Amount: -b})
			moved += b
		}
	}
	// The old deposit is kept, as the city's rules say for lost cards.
	if d := tx.Account(DepositCode(old.Number)); d != nil {
		if b := ledger.Balance(*d); b > 0 {
			entries = append(entries, store.Entry{Account: d.ID, Amount: b},
				store.Entry{Account: systemAccount(tx, AccountForfeited, cur).ID, Amount: -b})
		}
	}
	if len(entries) > 0 {
		if _, err := tx.Post(store.Transfer{Kind: store.TransferReplace, Currency: cur, Card: old.Number,
			Operator: o.teller, Memo: "replaced by " + number, Entries: entries}, time.Time{}); err != nil {
			return nil, err
		}
	}
	r, err := takeDeposit(tx, "replace", number, o.p, o.method, o.teller)
	if err != nil {
		return nil, err
	}
	old.Status, old.ReplacedBy = store.CardReplaced, number
	tx.PutCard(old)
	SyncDenyList(tx, old, o.p)
	c, _ := tx.Card(number)
	SyncDenyList(tx, c, o.p)
	v := viewInTx(tx, c, o.p)
	r.BalanceAfter = v.Balance
	return &ReplaceResult{CardView: v, Old: old.Number, Moved: moved, Receipt: r}, nil
}

// Replace issues a new card for a lost (or damaged) one: a new deposit is
// paid at the counter, the old deposit is kept, and every balance moves to
// the new card.
func (s *Service) Replace(ctx context.Context, c Call, req ReplaceRequest) (ledger.Outcome, error) {
	_, p, err := s.cardProduct(ctx, req.Card, "number")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := checkMethod(req.Method); err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "cards.replace", req.Card, &replaceOp{old: req.Card, p: p, method: req.Method, prefix: s.opts.IssuerPrefix, teller: c.Operator})
}

// CancelResult is the refund of a cancelled card.
type CancelResult struct {
	CardView
	Refund     int64   `json:"refund"`
	Deposit    int64   `json:"deposit_refunded"`
	Balances   int64   `json:"balances_refunded"`
	Debt       int64   `json:"debt_settled"`
	Unrefunded int64   `json:"unrefunded"`
	Receipt    Receipt `json:"receipt"`
}

type cancelOp struct {
	number string
	p      catalog.Product
	teller string
}

func (o *cancelOp) Prefetch(k *ledger.Keys) {
	k.Card(o.number)
	k.Account(AccountCash, AccountUnclaimed)
}

func (o *cancelOp) Apply(tx *ledger.Tx) (any, error) {
	c, err := cardInTx(tx, o.number)
	if err != nil {
		return nil, err
	}
	switch c.Status {
	case store.CardActive, store.CardLost:
	default:
		return nil, fault.E(fault.CardNotActive, "card", fmt.Sprintf("card %s is %s", c.Number, c.Status))
	}
	res := &CancelResult{}
	var entries []store.Entry
	for _, pu := range o.p.Purses {
		a := tx.Account(PurseCode(c.Number, pu.Name))
		if a == nil {
			continue
		}
		if err := noOpenHolds(c.Number, a); err != nil {
			return nil, err
		}
		b := ledger.Balance(*a)
		switch {
		case b < 0:
			res.Debt += -b
			entries = append(entries, store.Entry{Account: a.ID, Amount: b})
		case b > 0 && pu.Refundable:
			res.Balances += b
			entries = append(entries, store.Entry{Account: a.ID, Amount: b})
		case b > 0:
			// Non-refundable money (welfare, the medical account) goes back
			// to be dealt with by its own rules.
			res.Unrefunded += b
			entries = append(entries, store.Entry{Account: a.ID, Amount: b},
				store.Entry{Account: systemAccount(tx, AccountUnclaimed, c.Currency).ID, Amount: -b})
		}
	}
	if d := tx.Account(DepositCode(c.Number)); d != nil {
		if b := ledger.Balance(*d); b > 0 {
			res.Deposit = b
			entries = append(entries, store.Entry{Account: d.ID, Amount: b})
		}
	}
	res.Refund = res.Deposit + res.Balances - res.Debt
	if res.Refund < 0 {
		return nil, fault.E(fault.OutstandingDebt, "card", fmt.Sprintf(
			"card %s owes %d, more than its deposit and balances: top up first", c.Number, -res.Refund))
	}
	if res.Refund > 0 {
		entries = append(entries, store.Entry{Account: systemAccount(tx, AccountCash, c.Currency).ID, Amount: -res.Refund})
	}
	r := Receipt{Kind: "cancel", Card: c.Number, Method: "cash", Amount: res.Refund, Currency: c.Currency, Teller: o.teller, At: tx.Now()}
	if len(entries) > 0 {
		id, err := tx.Post(store.Transfer{Kind: store.TransferCancel, Currency: c.Currency, Card: c.Number,
			Amount: res.Refund, Operator: o.teller, Entries: entries}, time.Time{})
		if err != nil {
			return nil, err
		}
		r.Number, r.Transfer = receiptNo(id), strconv.FormatInt(id, 10)
	}
	c.Status = store.CardClosed
	tx.PutCard(c)
	SyncDenyList(tx, c, o.p)
	res.CardView = viewInTx(tx, c, o.p)
	res.Receipt = r
	return res, nil
}

// Cancel closes a card and refunds its deposit and every refundable balance
// in cash, less any debt.
func (s *Service) Cancel(ctx context.Context, c Call, number string) (ledger.Outcome, error) {
	_, p, err := s.cardProduct(ctx, number, "number")
	if err != nil {
		return ledger.Outcome{}, err
	}
	return s.submit(ctx, c, "cards.cancel", number, &cancelOp{number: number, p: p, teller: c.Operator})
}

// SetPINRequest sets or changes a card's PIN. At the counter the teller has
// checked the holder's ID; the old PIN is not needed, and the new one
// unlocks a locked PIN.
type SetPINRequest struct {
	Card string `json:"-"`
	PIN  string `json:"pin"`
}

type setPINOp struct {
	number string
	p      catalog.Product
	hash   string
}

func (o *setPINOp) Prefetch(k *ledger.Keys) { k.Card(o.number) }

func (o *setPINOp) Apply(tx *ledger.Tx) (any, error) {
	c, err := cardInTx(tx, o.number)
	if err != nil {
		return nil, err
	}
	if c.Status == store.CardClosed || c.Status == store.CardReplaced {
		return nil, fault.E(fault.CardNotActive, "card", fmt.Sprintf("card %s is %s", c.Number, c.Status))
	}
	c.PinHash, c.PinTries = o.hash, 0
	tx.PutCard(c)
	v := viewInTx(tx, c, o.p)
	return &v, nil
}

// SetPIN sets a card's PIN.
func (s *Service) SetPIN(ctx context.Context, c Call, req SetPINRequest) (ledger.Outcome, error) {
	_, p, err := s.cardProduct(ctx, req.Card, "number")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := pin.ValidFormat(req.PIN); err != nil {
		return ledger.Outcome{}, fault.E(fault.PINInvalidFormat, "pin", err.Error())
	}
	hash, err := s.hasher(req.PIN)
	if err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.Internal, err)
	}
	return s.submit(ctx, c, "cards.pin", req.Card, &setPINOp{number: req.Card, p: p, hash: hash})
}

func hashPIN(p string) (string, error)    { return pin.Hash(p) }
func verifyPIN(h, p string) (bool, error) { return pin.Verify(h, p) }

// noOpenHolds refuses to move or refund a purse that money is still held
// on: the holds must be captured or voided first.
func noOpenHolds(card string, purse *store.Account) error {
	if purse.DebitsPending > 0 {
		return fault.E(fault.HoldsPending, "card", fmt.Sprintf("card %s has open holds: capture or void them first", card))
	}
	return nil
}
