package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/store"
)

// reqInfo is what the outer handler learns about a request as it is served.
type reqInfo struct {
	id       string
	route    string
	operator string
	log      *slog.Logger
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{route: "unmatched", log: slog.New(slog.DiscardHandler)}
}

// requestID keeps a caller's correlation id if it is short and printable,
// so that ids flow through from the caller's own logs; otherwise it makes one.
func requestID(in string) string {
	if in != "" && len(in) <= 128 {
		ok := true
		for i := 0; i < len(in); i++ {
			if in[i] <= ' ' || in[i] > '~' {
				ok = false
				break
			}
		}
		if ok {
			return in
		}
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// recorder remembers the status written, for metrics and the log line.
type recorder struct {
	http.ResponseWriter
	status int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// exchange is one authenticated /v1 request.
type exchange struct {
	s      *server
	w      http.ResponseWriter
	r      *http.Request
	info   *reqInfo
	op     store.Operator
	action string
	// Set for writes: the body as sent, its canonical form's hash and the
	// idempotency key.
	body []byte
	hash string
	key  string
	// audited is set once the request has its own audit row, so a refusal
	// is not counted a second time among the refused writes.
	audited bool
}

// handle registers an operator route. Authentication, the role check and,
// for writes, the Idempotency-Key and the body's hash happen before h runs;
// h decodes the body and answers, or returns the error to answer with.
func (s *server) handle(pattern, action string, h func(*exchange) error) {
	write := strings.HasPrefix(pattern, "POST ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		info := infoOf(r)
		info.route = pattern
		x := &exchange{s: s, w: w, r: r, info: info, action: action}
		err := s.admit(x, write)
		if err == nil {
			err = h(x)
		}
		if err != nil {
			s.problem(w, r, err, 0)
			s.refused(x, err, write)
		}
	})
}

// refused counts a refusal in the audit log: every refused write, and a
// refused read when the refusal is about access (401, 403). A request that
// wrote its own audit row is not counted again.
func (s *server) refused(x *exchange, err error, write bool) {
	if x.audited {
		return
	}
	status := statusOf(err, fault.Problem(err, x.r.URL.Path).Status)
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		if !write {
			return
		}
	default:
		return
	}
	e := store.AuditEntry{At: s.now().UTC(), Operator: x.op.Name, Role: x.op.Role, Action: x.action,
		Target: auditText(x.r.URL.Path), Remote: remoteHost(x.r), Outcome: "refused:" + fault.CodeOf(err),
		Detail: fmt.Sprintf("status=%d request_id=%s", status, x.info.id)}
	s.refusals.note(x.r.Context(), e, status)
}

// admit runs the checks every /v1 request passes before its handler, and
// for writes reads the body and hashes it.
func (s *server) admit(x *exchange, write bool) error {
	r := x.r
	token, err := bearer(r)
	if err == nil {
		x.op, err = s.tokens.authenticate(r.Context(), s.st, token)
	}
	if err != nil {
		if fault.CodeOf(err) == fault.Unauthorized {
			x.w.Header().Set("WWW-Authenticate", `Bearer realm="citycard"`)
		}
		return err
	}
	x.info.operator = x.op.Name
	// The operator is added to the request line once authentication is known.
	x.info.log = s.log.With("request_id", x.info.id)
	if !operators.Allowed(x.op.Role, x.action) {
		return fault.E(fault.Forbidden, "", fmt.Sprintf("role %s may not %s", x.op.Role, x.action))
	}
	if !write {
		return nil
	}
	x.key = r.Header.Get("Idempotency-Key")
	if x.key == "" {
		return fault.E(fault.IdempotencyKeyRequired, "Idempotency-Key", "write requests need an Idempotency-Key header")
	}
	if len(x.key) > 255 || strings.ContainsFunc(x.key, func(c rune) bool { return c < ' ' || c > '~' }) {
		return fault.E(fault.InvalidRequest, "Idempotency-Key", "the Idempotency-Key must be 1-255 printable ASCII characters")
	}
	if err := checkContentType(r); err != nil {
		return err
	}
	if x.body, err = readBody(x.w, r); err != nil {
		return err
	}
	canon, err := canonical(x.body)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(r.Method + " " + r.URL.EscapedPath() + "\n" + string(canon)))
	x.hash = hex.EncodeToString(sum[:])
	return nil
}

// replay answers from a stored idempotency record, if there is one. It
// serves the writes that do not go through the ledger writer (merchants,
// terminals), so that a key used for a ledger write is not reused for them.
func (x *exchange) replay() (bool, error) {
	recs, err := x.s.st.LoadIdempotency(x.r.Context(), []store.IdemKey{{Operator: x.op.Name, Key: x.key}})
	if err != nil {
		return false, fault.Wrap(fault.Unavailable, err)
	}
	if len(recs) == 0 {
		return false, nil
	}
	rec := recs[0]
	if rec.RequestHash != x.hash {
		return false, fault.E(fault.IdempotencyConflict, "Idempotency-Key", "this key was used before with a different request")
	}
	x.w.Header().Set("Idempotent-Replayed", "true")
	writeRaw(x.w, rec.Status, rec.Response)
	return true, nil
}

// audit appends an entry for an action the API carries out itself.
func (x *exchange) audit(target string, err error) error {
	return x.auditDetail(target, "", err)
}

// auditDetail is audit with more to say in the detail than the request id.
// The row is written even if the request's context has ended: the action
// it records was carried out.
func (x *exchange) auditDetail(target, detail string, err error) error {
	outcome := "ok"
	if err != nil {
		outcome = "error:" + fault.CodeOf(err)
	}
	if detail != "" {
		detail += " "
	}
	e := store.AuditEntry{At: x.s.now().UTC(), Operator: x.op.Name, Role: x.op.Role, Action: x.action,
		Target: auditText(target), Remote: remoteHost(x.r), Outcome: outcome,
		Detail: auditText(detail + "request_id=" + x.info.id)}
	x.audited = true
	if aerr := x.s.st.AppendAudit(context.WithoutCancel(x.r.Context()), e); aerr != nil {
		return fault.Wrap(fault.Unavailable, fmt.Errorf("audit: %w", aerr))
	}
	return nil
}

// auditText makes caller-supplied text storable by every driver: the audit
// row of a request must not fail because the request carried a NUL or
// invalid UTF-8, nor grow without bound.
func auditText(s string) string {
	const limit = 512
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\\0")
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fault.E(fault.Unauthorized, "Authorization", "a bearer token is required")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fault.E(fault.Unauthorized, "Authorization", "the Authorization header must be \"Bearer <token>\"")
	}
	return token, nil
}

// readBody reads at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &sizedError{fault.E(fault.InvalidRequest, "", fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))}
	case err != nil:
		return nil, fault.E(fault.InvalidRequest, "", "the body could not be read")
	}
	return b, nil
}

// sizedError is a body over the limit: 413, with the invalid_request code.
type sizedError struct{ err *fault.Error }

func (e *sizedError) Error() string { return e.err.Error() }
func (e *sizedError) Unwrap() error { return e.err }

// call is the cards.Call for this request; status is the HTTP status of a
// fresh answer.
func (x *exchange) call(status int) cards.Call {
	return cards.Call{Operator: x.op.Name, Role: x.op.Role, Remote: remoteHost(x.r), RequestID: x.info.id,
		IdempotencyKey: x.key, RequestHash: x.hash, Encode: encoder(status)}
}

// encoder renders a service result as the answer stored with the key.
func encoder(status int) ledger.Encoder {
	return func(result any) (int, []byte, error) {
		b, err := marshal(result)
		if err != nil {
			return 0, nil, fault.Wrap(fault.Internal, err)
		}
		return status, b, nil
	}
}

// write runs a ledger write with the request's Call and sends the answer,
// fresh or replayed. The ledger writer looks the Idempotency-Key up itself,
// in the batch that would write it, so the API does not read it first.
func (x *exchange) write(status int, do func(cards.Call) (ledger.Outcome, error)) error {
	out, err := do(x.call(status))
	if err != nil {
		return err
	}
	if out.Replayed {
		x.w.Header().Set("Idempotent-Replayed", "true")
	} else {
		x.s.metrics.posted(x.action)
	}
	writeRaw(x.w, out.Status, out.Body)
	return nil
}
