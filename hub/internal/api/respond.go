package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/schemas"
)

func marshal(v any) ([]byte, error) { return json.Marshal(v) }

// writeJSON answers v as application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

// writeRaw answers an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// problemBody is a problem document with the request's correlation id and,
// for malformed JSON, where the parser stopped.
type problemBody struct {
	fault.ProblemDetails
	RequestID string `json:"request_id,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// problem answers err as RFC 9457 problem details. status overrides the
// registry's status when not 0.
func (s *server) problem(w http.ResponseWriter, r *http.Request, err error, status int) {
	info := infoOf(r)
	p := problemBody{ProblemDetails: fault.Problem(err, r.URL.Path), RequestID: info.id}
	if status == 0 {
		status = statusOf(err, p.Status)
	}
	p.Status = status
	var se *syntaxError
	if errors.As(err, &se) {
		p.Offset = &se.offset
	}
	if status >= 500 {
		info.log.Error("api: request failed", "code", p.Code, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	b, merr := marshal(p)
	if merr != nil {
		b = []byte(`{"code":"internal","status":500}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", fault.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Decline codes that a service returns as an error (a top-up past the
// maximum balance, a capture of an expired hold) are refusals, never 2xx:
// the card's state is in the way (409) or the request cannot be carried out
// as asked (422).
var declineStatus = map[string]int{
	fault.CardNotActive: http.StatusConflict,
	fault.CardFrozen:    http.StatusConflict,
	fault.CardLost:      http.StatusConflict,
	fault.CardClosed:    http.StatusConflict,
	fault.PINLocked:     http.StatusConflict,
	fault.HoldExpired:   http.StatusConflict,
}

// statusOf is the HTTP status of err, whose registry status is registry.
func statusOf(err error, registry int) int {
	var se *sizedError
	if errors.As(err, &se) {
		return http.StatusRequestEntityTooLarge
	}
	code := fault.CodeOf(err)
	if d, ok := schemas.LookupError(code); ok && d.Kind == schemas.KindDecline {
		if st, ok := declineStatus[code]; ok {
			return st
		}
		return http.StatusUnprocessableEntity
	}
	if registry < 400 {
		return http.StatusInternalServerError
	}
	return registry
}
