package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
)

// MerchantView is a merchant as the API shows it.
type MerchantView struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	MCC               string    `json:"mcc"`
	FeeRateBps        int64     `json:"fee_rate_bps"`
	SettlementAccount string    `json:"settlement_account"`
	CreatedAt         time.Time `json:"created_at"`
}

func merchantView(m store.Merchant) MerchantView {
	return MerchantView{ID: m.ID, Name: m.Name, MCC: m.MCC, FeeRateBps: m.FeeRateBps,
		SettlementAccount: m.SettlementAccount, CreatedAt: m.CreatedAt}
}

// TerminalView is a terminal as the API shows it.
type TerminalView struct {
	ID        string    `json:"id"`
	Merchant  string    `json:"merchant"`
	CreatedAt time.Time `json:"created_at"`
}

func terminalView(t store.Terminal) TerminalView {
	return TerminalView{ID: t.ID, Merchant: t.Merchant, CreatedAt: t.CreatedAt}
}

// addMerchant registers a merchant. The store keeps no idempotency record
// outside the ledger's group commit, so the merchant id is the natural key:
// a retry whose fields equal the stored row is a replay, anything else
// under the same id is a duplicate.
func (s *server) addMerchant(x *exchange) error {
	var req cards.MerchantRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	if done, err := x.replay(); done || err != nil {
		return err
	}
	ctx := x.r.Context()
	m, err := s.svc.AddMerchant(ctx, req)
	if fault.Is(err, fault.Duplicate) {
		old, gerr := s.svc.Merchant(ctx, req.ID)
		if gerr == nil && old.Name == req.Name && old.MCC == req.MCC && old.FeeRateBps == req.FeeRateBps &&
			old.SettlementAccount == req.SettlementAccount {
			x.w.Header().Set("Idempotent-Replayed", "true")
			writeJSON(x.w, http.StatusCreated, merchantView(old))
			return nil
		}
	}
	if aerr := x.audit(req.ID, err); aerr != nil && err == nil {
		return aerr
	}
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusCreated, merchantView(m))
	return nil
}

func (s *server) listMerchants(x *exchange) error {
	ms, err := s.svc.Merchants(x.r.Context())
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	out := make([]MerchantView, 0, len(ms))
	for _, m := range ms {
		out = append(out, merchantView(m))
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"merchants": out})
	return nil
}

func (s *server) getMerchant(x *exchange) error {
	m, err := s.svc.Merchant(x.r.Context(), x.r.PathValue("id"))
	if fault.Is(err, fault.MerchantNotFound) {
		// The merchant is the resource addressed, so this is a plain 404.
		s.problem(x.w, x.r, err, http.StatusNotFound)
		return nil
	}
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	writeJSON(x.w, http.StatusOK, merchantView(m))
	return nil
}

// addTerminal registers a terminal; a retry naming the same merchant is a
// replay, as for merchants.
func (s *server) addTerminal(x *exchange) error {
	var req cards.TerminalRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	if done, err := x.replay(); done || err != nil {
		return err
	}
	ctx := x.r.Context()
	t, err := s.svc.AddTerminal(ctx, req)
	if fault.Is(err, fault.Duplicate) {
		old, gerr := s.st.GetTerminal(ctx, req.ID)
		if gerr == nil && old.Merchant == req.Merchant {
			x.w.Header().Set("Idempotent-Replayed", "true")
			writeJSON(x.w, http.StatusCreated, terminalView(old))
			return nil
		}
		if gerr == nil {
			err = fault.E(fault.Duplicate, "id", "terminal "+req.ID+" already exists and belongs to merchant "+old.Merchant)
		}
	}
	if aerr := x.audit(req.ID, err); aerr != nil && err == nil {
		return aerr
	}
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusCreated, terminalView(t))
	return nil
}

func (s *server) listTerminals(x *exchange) error {
	ctx := x.r.Context()
	merchant := x.r.URL.Query().Get("merchant")
	if merchant != "" {
		if _, err := s.svc.Merchant(ctx, merchant); fault.Is(err, fault.MerchantNotFound) {
			s.problem(x.w, x.r, fault.E(fault.MerchantNotFound, "merchant", "no merchant "+strconv.Quote(merchant)), http.StatusNotFound)
			return nil
		} else if err != nil {
			return fault.Wrap(fault.Unavailable, err)
		}
	}
	ts, err := s.svc.Terminals(ctx, merchant)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	out := make([]TerminalView, 0, len(ts))
	for _, t := range ts {
		out = append(out, terminalView(t))
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"terminals": out})
	return nil
}

func (s *server) listProducts(x *exchange) error {
	ps := s.svc.Catalog().Products()
	if ps == nil {
		ps = []catalog.Product{}
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"products": ps})
	return nil
}

// AuditView is one audit log entry.
type AuditView struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	Operator string    `json:"operator"`
	Role     string    `json:"role"`
	Action   string    `json:"action"`
	Target   string    `json:"target,omitempty"`
	Remote   string    `json:"remote,omitempty"`
	Outcome  string    `json:"outcome"`
	Detail   string    `json:"detail,omitempty"`
}

// AuditPage is GET /v1/audit: entries after an id, oldest first; pass
// NextAfter as ?after= for the next page.
type AuditPage struct {
	Entries   []AuditView `json:"entries"`
	NextAfter int64       `json:"next_after"`
}

// Page sizes of the listings (audit, dead letters, a device's taps).
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// pageQuery reads a listing's ?after= (a cursor, ≥ 0, default 0) and
// ?limit= (1 to maxPageLimit, default defaultPageLimit).
func pageQuery(q url.Values) (after int64, limit int, err error) {
	if after, err = queryInt(q.Get("after"), 0, "after"); err != nil {
		return 0, 0, err
	}
	n, err := queryInt(q.Get("limit"), defaultPageLimit, "limit")
	if err != nil {
		return 0, 0, err
	}
	if after < 0 {
		return 0, 0, fault.E(fault.InvalidRequest, "after", "after must not be negative")
	}
	if n < 1 || n > maxPageLimit {
		return 0, 0, fault.E(fault.InvalidRequest, "limit", "limit must be 1.."+strconv.Itoa(maxPageLimit))
	}
	return after, int(n), nil
}

func (s *server) listAudit(x *exchange) error {
	after, limit, err := pageQuery(x.r.URL.Query())
	if err != nil {
		return err
	}
	es, err := s.st.ListAudit(x.r.Context(), after, limit)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	page := AuditPage{Entries: make([]AuditView, 0, len(es)), NextAfter: after}
	for _, e := range es {
		page.Entries = append(page.Entries, AuditView{ID: e.ID, At: e.At, Operator: e.Operator, Role: e.Role,
			Action: e.Action, Target: e.Target, Remote: e.Remote, Outcome: e.Outcome, Detail: e.Detail})
		page.NextAfter = max(page.NextAfter, e.ID)
	}
	writeJSON(x.w, http.StatusOK, page)
	return nil
}

func queryInt(raw string, def int64, field string) (int64, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return 0, fault.E(fault.InvalidRequest, field, field+" must be an integer")
		}
		return 0, err
	}
	return n, nil
}
