package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// pay answers 201 whether approved or declined: a decline is an answer.
func (s *server) pay(x *exchange) error {
	var req cards.PaymentRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Pay(x.r.Context(), c, req)
	})
}

func (s *server) hold(x *exchange) error {
	var req cards.HoldRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Hold(x.r.Context(), c, req)
	})
}

func (s *server) capture(x *exchange) error {
	var req cards.CaptureRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	id, err := pathID(x, "id", fault.HoldNotFound)
	if err != nil {
		return err
	}
	req.Hold = id
	return x.write(http.StatusOK, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Capture(x.r.Context(), c, req)
	})
}

func (s *server) void(x *exchange) error {
	if err := decodeStrict(x.body, &noBody{}); err != nil {
		return err
	}
	id, err := pathID(x, "id", fault.HoldNotFound)
	if err != nil {
		return err
	}
	return x.write(http.StatusOK, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Void(x.r.Context(), c, id)
	})
}

// reverse answers 201: a reversal is a new transfer.
func (s *server) reverse(x *exchange) error {
	var req cards.ReverseRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	id, err := pathID(x, "id", fault.TransferNotFound)
	if err != nil {
		return err
	}
	req.Transfer = id
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Reverse(x.r.Context(), c, req)
	})
}

// HoldView is a hold as GET /v1/holds/{id} shows it.
type HoldView struct {
	ID        string    `json:"id"`
	Card      string    `json:"card"`
	Merchant  string    `json:"merchant"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Captured  int64     `json:"captured"`
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (s *server) getHold(x *exchange) error {
	id, err := pathID(x, "id", fault.HoldNotFound)
	if err != nil {
		return err
	}
	hs, err := s.st.LoadHolds(x.r.Context(), []int64{id})
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	if len(hs) == 0 {
		return fault.E(fault.HoldNotFound, "id", "no hold "+strconv.FormatInt(id, 10))
	}
	h := hs[0]
	writeJSON(x.w, http.StatusOK, HoldView{ID: strconv.FormatInt(h.ID, 10), Card: h.Card, Merchant: h.Merchant,
		Amount: h.Amount, Currency: h.Currency, Captured: h.Captured, Status: h.Status,
		ExpiresAt: h.ExpiresAt, UpdatedAt: h.UpdatedAt})
	return nil
}

// TransferView is a transfer as GET /v1/transfers/{id} shows it. Entries
// carry signed amounts: positive debits, negative credits.
type TransferView struct {
	ID         string      `json:"id"`
	Batch      int64       `json:"batch"`
	Kind       string      `json:"kind"`
	Currency   string      `json:"currency"`
	Card       string      `json:"card,omitempty"`
	Pending    bool        `json:"pending"`
	Ref        string      `json:"ref,omitempty"`
	Amount     int64       `json:"amount"`
	Channel    string      `json:"channel,omitempty"`
	Merchant   string      `json:"merchant,omitempty"`
	Terminal   string      `json:"terminal,omitempty"`
	Operator   string      `json:"operator,omitempty"`
	Memo       string      `json:"memo,omitempty"`
	At         time.Time   `json:"at"`
	Entries    []EntryView `json:"entries"`
	ReversedBy string      `json:"reversed_by,omitempty"`
}

// EntryView is one leg of a transfer.
type EntryView struct {
	Account   string `json:"account"`
	AccountID int64  `json:"account_id"`
	Amount    int64  `json:"amount"`
}

func (s *server) getTransfer(x *exchange) error {
	ctx := x.r.Context()
	id, err := pathID(x, "id", fault.TransferNotFound)
	if err != nil {
		return err
	}
	t, err := s.st.GetTransfer(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fault.E(fault.TransferNotFound, "id", "no transfer "+strconv.FormatInt(id, 10))
	} else if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	rev, err := s.st.ReversalOf(ctx, id)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	codes, err := s.accountCodes(x, t)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	v := TransferView{ID: strconv.FormatInt(t.ID, 10), Batch: t.Batch, Kind: t.Kind, Currency: t.Currency,
		Card: t.Card, Pending: t.Pending, Amount: t.Amount, Channel: t.Channel, Merchant: t.Merchant,
		Terminal: t.Terminal, Operator: t.Operator, Memo: t.Memo, At: t.At, Entries: []EntryView{}}
	if t.Ref != 0 {
		v.Ref = strconv.FormatInt(t.Ref, 10)
	}
	if rev != 0 {
		v.ReversedBy = strconv.FormatInt(rev, 10)
	}
	for _, e := range t.Entries {
		code := codes[e.Account]
		if code == "" {
			code = "#" + strconv.FormatInt(e.Account, 10)
		}
		v.Entries = append(v.Entries, EntryView{Account: code, AccountID: e.Account, Amount: e.Amount})
	}
	writeJSON(x.w, http.StatusOK, v)
	return nil
}

// accountCodes names the accounts a transfer can touch: its card's, its
// merchant's and the hub's own. The store looks accounts up by code only.
func (s *server) accountCodes(x *exchange, t store.Transfer) (map[int64]string, error) {
	ctx := x.r.Context()
	out := map[int64]string{}
	if t.Card != "" {
		as, err := s.st.CardAccounts(ctx, t.Card)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			out[a.ID] = a.Code
		}
	}
	codes := []string{cards.AccountCash, cards.AccountBank, cards.AccountForfeited, cards.AccountUnclaimed}
	if t.Merchant != "" {
		codes = append(codes, cards.MerchantCode(t.Merchant))
	}
	as, err := s.st.LoadAccounts(ctx, codes)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		out[a.ID] = a.Code
	}
	return out, nil
}

// TrialBalance is GET /v1/ledger/trial-balance.
type TrialBalance struct {
	Accounts     []TrialLine `json:"accounts"`
	TotalDebits  int64       `json:"total_debits"`
	TotalCredits int64       `json:"total_credits"`
	Balanced     bool        `json:"balanced"`
}

// TrialLine is one account's posted totals.
type TrialLine struct {
	Code    string `json:"code"`
	Kind    string `json:"kind"`
	Debits  int64  `json:"debits"`
	Credits int64  `json:"credits"`
}

func (s *server) trialBalance(x *exchange) error {
	lines, err := s.st.TrialBalance(x.r.Context())
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	tb := TrialBalance{Accounts: make([]TrialLine, 0, len(lines))}
	for _, l := range lines {
		tb.Accounts = append(tb.Accounts, TrialLine{Code: l.Code, Kind: l.Kind, Debits: l.Debits, Credits: l.Credits})
		tb.TotalDebits += l.Debits
		tb.TotalCredits += l.Credits
	}
	tb.Balanced = tb.TotalDebits == tb.TotalCredits
	writeJSON(x.w, http.StatusOK, tb)
	return nil
}
