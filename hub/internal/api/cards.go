package api

import (
	"net/http"
	"strconv"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
)

// noBody is the request of writes that take no fields (loss, freeze…): an
// empty body or {} is accepted, anything else is an unknown field.
type noBody struct{}

func (s *server) issueCard(x *exchange) error {
	var req cards.IssueRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Issue(x.r.Context(), c, req)
	})
}

// getCard shows a card. The holder's data is personal, so every read is
// audited, and the answer waits for its audit entry.
func (s *server) getCard(x *exchange) error {
	number := x.r.PathValue("number")
	v, err := s.svc.Get(x.r.Context(), number)
	if aerr := x.audit(number, err); aerr != nil {
		return aerr
	}
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusOK, v)
	return nil
}

func (s *server) topUp(x *exchange) error {
	req := cards.TopUpRequest{}
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	req.Card = x.r.PathValue("number")
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.TopUp(x.r.Context(), c, req)
	})
}

// statusChange serves the bodiless card writes.
func (s *server) statusChange(x *exchange, do func(c cards.Call, number string) (ledger.Outcome, error)) error {
	if err := decodeStrict(x.body, &noBody{}); err != nil {
		return err
	}
	number := x.r.PathValue("number")
	return x.write(http.StatusOK, func(c cards.Call) (ledger.Outcome, error) { return do(c, number) })
}

func (s *server) reportLoss(x *exchange) error {
	return s.statusChange(x, func(c cards.Call, n string) (ledger.Outcome, error) {
		return s.svc.ReportLoss(x.r.Context(), c, n)
	})
}

func (s *server) freeze(x *exchange) error {
	return s.statusChange(x, func(c cards.Call, n string) (ledger.Outcome, error) {
		return s.svc.Freeze(x.r.Context(), c, n)
	})
}

func (s *server) unfreeze(x *exchange) error {
	return s.statusChange(x, func(c cards.Call, n string) (ledger.Outcome, error) {
		return s.svc.Unfreeze(x.r.Context(), c, n)
	})
}

func (s *server) cancel(x *exchange) error {
	return s.statusChange(x, func(c cards.Call, n string) (ledger.Outcome, error) {
		return s.svc.Cancel(x.r.Context(), c, n)
	})
}

// replace answers 201: it creates a card.
func (s *server) replace(x *exchange) error {
	var req cards.ReplaceRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	req.Card = x.r.PathValue("number")
	return x.write(http.StatusCreated, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.Replace(x.r.Context(), c, req)
	})
}

func (s *server) setPIN(x *exchange) error {
	var req cards.SetPINRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	req.Card = x.r.PathValue("number")
	return x.write(http.StatusOK, func(c cards.Call) (ledger.Outcome, error) {
		return s.svc.SetPIN(x.r.Context(), c, req)
	})
}

// pathID reads a numeric id from the path.
func pathID(x *exchange, name, notFound string) (int64, error) {
	raw := x.r.PathValue(name)
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, fault.E(notFound, name, "no such id: "+strconv.Quote(raw))
	}
	return id, nil
}
