package medical

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// Codes of the HTTP API's own errors; the hub's codes (schemas/errors.json)
// are passed on as the hub gave them.
const (
	CodeInvalidJSON        = "invalid_json"        // 400: the body is not JSON of the expected shape
	CodeUnknownField       = "unknown_field"       // 400: the body has a member the API does not know
	CodeInvalidRequest     = "invalid_request"     // 400: a value is missing or malformed; field says which
	CodeFeeLinesMismatch   = "fee_lines_mismatch"  // 422: a line's amount is not price × quantity, or the lines do not add up to the total
	CodeConflict           = "conflict"            // 409: the bill id was posted before with other content
	CodeInsurerError       = "insurer_error"       // 502: the insurer refused a step (infcode -1); message holds its err_msg
	CodeInsurerUnavailable = "insurer_unavailable" // 503: the insurer did not answer; post the bill again
	CodeNotConfigured      = "not_configured"      // 503
	CodeNotFound           = "not_found"           // 404
)

// BillRequest is the body of POST /v1/bills.
type BillRequest = sim.Bill

// Problem is the body of every error answer.
type Problem struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Code + ": " + p.Message }

// server is the HTTP API hospitals and pharmacies call.
type server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	once sync.Once
}

func listen(addr string, st *state, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("medical: listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/bills", st.postBill)
	mux.HandleFunc("POST /v1/bills/{bill_id}/refund", st.postRefund)
	mux.HandleFunc("GET /v1/reconciliation", st.getReconciliation)
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, &Problem{Code: CodeNotFound, Message: r.Method + " " + r.URL.Path + " is not part of this API"})
	})
	s := &server{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the HTTP API stopped", "err", err)
		}
	}()
	return s, nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

// close stops taking requests and waits for those in flight.
func (s *server) close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s.srv.Shutdown(ctx) != nil {
			_ = s.srv.Close()
		}
		<-s.done
	})
}

var (
	billIDPattern   = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)
	entityIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	cardPattern     = regexp.MustCompile(`^[0-9]{16,19}$`)
	pinPattern      = regexp.MustCompile(`^[0-9]{6}$`)
)

// Kinds of bill.
const (
	Outpatient = "outpatient"
	Inpatient  = "inpatient"
	Pharmacy   = "pharmacy"
)

// maxMoney keeps every amount exact in any JSON reader.
const maxMoney = 1<<53 - 1

func invalid(field, format string, args ...any) *Problem {
	return &Problem{Code: CodeInvalidRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// checkBill checks a bill's shape, then its arithmetic: each line's amount
// is its price times its quantity, and the lines add up to the total.
func checkBill(b BillRequest) (problem *Problem, status int) {
	switch {
	case !billIDPattern.MatchString(b.BillID):
		return invalid("/bill_id", "bill_id must be 1 to 64 printable ASCII characters"), http.StatusBadRequest
	case !entityIDPattern.MatchString(b.Hospital):
		return invalid("/hospital", "hospital must be the hub's merchant id of the hospital or pharmacy"), http.StatusBadRequest
	case b.Terminal != "" && !entityIDPattern.MatchString(b.Terminal):
		return invalid("/terminal", "terminal must be the hub's terminal id"), http.StatusBadRequest
	case b.Kind != Outpatient && b.Kind != Inpatient && b.Kind != Pharmacy:
		return invalid("/kind", "kind must be outpatient, inpatient or pharmacy, not %q", b.Kind), http.StatusBadRequest
	case !cardPattern.MatchString(b.Card):
		return invalid("/card", "card must be the city card's number, 16 to 19 digits"), http.StatusBadRequest
	case b.PIN != "" && !pinPattern.MatchString(b.PIN):
		return invalid("/pin", "a PIN is exactly six digits"), http.StatusBadRequest
	case strings.TrimSpace(b.Patient.IDNo) == "" || len(b.Patient.IDNo) > 32:
		return invalid("/patient/id_no", "the patient's ID card number is required"), http.StatusBadRequest
	case strings.TrimSpace(b.Patient.Name) == "" || len(b.Patient.Name) > 128:
		return invalid("/patient/name", "the patient's name is required"), http.StatusBadRequest
	case b.Currency != "CNY":
		return invalid("/currency", "bills are in CNY, not %q", b.Currency), http.StatusBadRequest
	case b.Total < 1 || b.Total > maxMoney:
		return invalid("/total", "total must be a positive amount in fen"), http.StatusBadRequest
	case len(b.Lines) == 0 || len(b.Lines) > 1000:
		return invalid("/lines", "a bill has 1 to 1000 lines"), http.StatusBadRequest
	}
	for i, l := range b.Lines {
		at := fmt.Sprintf("/lines/%d/", i)
		switch {
		case strings.TrimSpace(l.Code) == "" || len(l.Code) > 64:
			return invalid(at+"code", "a line needs its code in the insurer's catalogue"), http.StatusBadRequest
		case strings.TrimSpace(l.Name) == "" || len(l.Name) > 200:
			return invalid(at+"name", "a line needs a name"), http.StatusBadRequest
		case l.UnitPrice < 0 || l.UnitPrice > maxMoney:
			return invalid(at+"unit_price", "unit_price must be an amount in fen, 0 or more"), http.StatusBadRequest
		case l.Quantity < 1 || l.Quantity > 1_000_000:
			return invalid(at+"quantity", "quantity must be a whole number, 1 or more"), http.StatusBadRequest
		case l.Amount < 0 || l.Amount > maxMoney:
			return invalid(at+"amount", "amount must be an amount in fen, 0 or more"), http.StatusBadRequest
		}
	}
	var sum int64
	for i, l := range b.Lines {
		if l.UnitPrice > maxMoney/l.Quantity || l.UnitPrice*l.Quantity != l.Amount {
			return &Problem{Code: CodeFeeLinesMismatch, Field: fmt.Sprintf("/lines/%d/amount", i),
				Message: fmt.Sprintf("line %d (%s): amount %d is not unit_price %d × quantity %d", i, l.Code, l.Amount, l.UnitPrice, l.Quantity)}, http.StatusUnprocessableEntity
		}
		if sum += l.Amount; sum > maxMoney {
			return &Problem{Code: CodeFeeLinesMismatch, Field: "/total", Message: "the lines add up to more than any bill can hold"}, http.StatusUnprocessableEntity
		}
	}
	if sum != b.Total {
		return &Problem{Code: CodeFeeLinesMismatch, Field: "/total",
			Message: fmt.Sprintf("the lines add up to %d, not the total %d", sum, b.Total)}, http.StatusUnprocessableEntity
	}
	return nil, 0
}

// decodeBody reads a JSON body strictly into v.
func decodeBody(r *http.Request, v any) *Problem {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &Problem{Code: CodeUnknownField, Field: "/" + name, Message: fmt.Sprintf("%q is not a member of this request", name)}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &Problem{Code: CodeInvalidJSON, Field: "/" + strings.ReplaceAll(te.Field, ".", "/"),
				Message: fmt.Sprintf("%s must be a JSON %s", te.Field, te.Type.Kind())}
		}
		return &Problem{Code: CodeInvalidJSON, Message: "the body is not a JSON object of the expected shape: " + err.Error()}
	}
	if dec.More() {
		return &Problem{Code: CodeInvalidJSON, Message: "the body holds more than one JSON value"}
	}
	return nil
}

func fingerprint(b BillRequest) string {
	raw, _ := json.Marshal(b)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func (st *state) postBill(w http.ResponseWriter, r *http.Request) {
	var b BillRequest
	if p := decodeBody(r, &b); p != nil {
		writeProblem(w, http.StatusBadRequest, p)
		return
	}
	if p, status := checkBill(b); p != nil {
		writeProblem(w, status, p)
		return
	}
	log := st.log.With("bill_id", b.BillID, "hospital", b.Hospital, "kind", b.Kind, "total", b.Total)
	if st.answeredAtHub(r.Context(), w, log, b) {
		return
	}
	msg, p, status := st.prepare(r.Context(), log, b)
	if p != nil {
		writeProblem(w, status, p)
		return
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, &Problem{Code: sdk.CodeInternal, Message: err.Error()})
		return
	}
	st.submit(r.Context(), w, log, sdk.Message{Type: TypeBill, IdempotencyKey: "bill:" + b.Hospital + ":" + b.BillID, Payload: payload})
}

// answeredAtHub asks the hub what became of a bill this process has not
// seen: the plugin may have been restarted while the hub settled it (the
// journal is in memory). A bill the hub settled is answered with the hub's
// receipt; one it is still settling is answered "in progress, post it
// again"; in either case nothing is done again at the insurer, whose visit
// may already be settled. It reports whether it answered the HIS.
func (st *state) answeredAtHub(ctx context.Context, w http.ResponseWriter, log *slog.Logger, b BillRequest) bool {
	e := st.j.bill(b.Hospital + ":" + b.BillID)
	e.mu.Lock()
	seen := e.fingerprint != ""
	e.mu.Unlock()
	if seen {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, st.hubTimeout)
	defer cancel()
	raw, err := st.hub.Query(ctx, sdk.QueryAnswer, "bill:"+b.Hospital+":"+b.BillID)
	if err != nil {
		if !sdk.IsRetryable(err) {
			// A hub (or a test's) that answers no such query: the
			// submission will say what the hub thinks of the bill.
			return false
		}
		log.Warn("the hub did not say what became of the bill", "err", err)
		writeProblem(w, http.StatusServiceUnavailable, &Problem{Code: sdk.CodeUnavailable,
			Message: "the hub did not answer; post the bill again"})
		return true
	}
	var a sdk.Answer
	if err := json.Unmarshal(raw, &a); err != nil {
		writeProblem(w, http.StatusBadGateway, &Problem{Code: sdk.CodeInternal, Message: "the hub's answer: " + err.Error()})
		return true
	}
	switch a.State {
	case sdk.AnswerAnswered:
		log.Info("the hub had settled the bill already", "duplicate", true)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(a.Body)
		return true
	case sdk.AnswerInProgress:
		writeProblem(w, http.StatusConflict, &Problem{Code: sdk.CodeInProgress,
			Message: "the hub is still settling this bill; post it again"})
		return true
	}
	return false
}

// prepare does the insurer's part of a bill, once per bill id: who the
// patient is (1101), then for the insured the registration (2201, not for
// a pharmacy), the fee upload (2204) and the pre-settlement (2206). Each
// step's result is journalled, so posting the bill again repeats none, and
// a bill that failed half way resumes where it stopped.
func (st *state) prepare(ctx context.Context, log *slog.Logger, b BillRequest) (BillMessage, *Problem, int) {
	msg := BillMessage{BillID: b.BillID, Hospital: b.Hospital, Terminal: b.Terminal, Kind: b.Kind, Card: b.Card, PIN: b.PIN,
		Total: b.Total, Currency: b.Currency}
	e := st.j.bill(b.Hospital + ":" + b.BillID)
	e.mu.Lock()
	defer e.mu.Unlock()
	fp := fingerprint(b)
	if e.fingerprint != "" && e.fingerprint != fp {
		return msg, &Problem{Code: CodeConflict, Field: "/bill_id",
			Message: fmt.Sprintf("bill %s of %s was posted before with other content; a changed bill needs a new bill_id", b.BillID, b.Hospital)}, http.StatusConflict
	}
	e.fingerprint = fp
	billNo := b.Hospital + ":" + b.BillID
	if e.person == nil {
		var out sim.PersonOutput
		if err := st.ins.call(ctx, sim.InfPerson, st.ins.msgid(), sim.PersonInput{CertNo: b.Patient.IDNo, PsnName: b.Patient.Name}, &out); err != nil {
			p, status := insurerProblem(log, "person information (1101)", err)
			return msg, p, status
		}
		e.person = &person{psnNo: out.PsnNo, insured: out.Insured && out.PsnNo != ""}
		log.Info("patient identified", "psn_no", out.PsnNo, "insured", e.person.insured)
	}
	if !e.person.insured {
		return msg, nil, 0
	}
	psn := e.person.psnNo
	if b.Kind != Pharmacy && e.mdtrtID == "" {
		var out sim.RegisterOutput
		in := sim.RegisterInput{PsnNo: psn, OrgCode: st.org, BillNo: billNo, MedType: map[string]string{Outpatient: "11", Inpatient: "21"}[b.Kind]}
		if err := st.ins.call(ctx, sim.InfRegister, st.ins.msgid(), in, &out); err != nil {
			p, status := insurerProblem(log, "registration (2201)", err)
			return msg, p, status
		}
		e.mdtrtID = out.MdtrtID
		log.Info("visit registered", "psn_no", psn, "mdtrt_id", out.MdtrtID)
	}
	if !e.uploaded {
		lines := make([]sim.FeeLine, len(b.Lines))
		for i, l := range b.Lines {
			lines[i] = sim.FeeLine{Code: l.Code, Name: l.Name, UnitPrice: l.UnitPrice, Quantity: l.Quantity, Amount: l.Amount}
		}
		var out sim.UploadOutput
		in := sim.UploadInput{PsnNo: psn, MdtrtID: e.mdtrtID, OrgCode: st.org, BillNo: billNo, Lines: lines}
		if err := st.ins.call(ctx, sim.InfUploadFees, st.ins.msgid(), in, &out); err != nil {
			p, status := insurerProblem(log, "fee-detail upload (2204)", err)
			return msg, p, status
		}
		if out.Total != b.Total {
			return msg, &Problem{Code: CodeInsurerError, Message: fmt.Sprintf("the insurer counts %d for the fees, the bill %d", out.Total, b.Total)}, http.StatusBadGateway
		}
		// A pharmacy has no registration: the upload opens its visit.
		e.mdtrtID, e.uploaded = out.MdtrtID, true
		log.Info("fee details uploaded", "mdtrt_id", out.MdtrtID, "lines", out.Count)
	}
	if e.pre == nil {
		var out sim.SettleOutput
		in := sim.SettleInput{PsnNo: psn, MdtrtID: e.mdtrtID, Total: b.Total}
		if err := st.ins.call(ctx, sim.InfPreSettle, st.ins.msgid(), in, &out); err != nil {
			p, status := insurerProblem(log, "pre-settlement (2206)", err)
			return msg, p, status
		}
		if out.FundPay < 0 || out.AcctPay < 0 || out.CashPay < 0 || out.FundPay+out.AcctPay+out.CashPay != b.Total {
			return msg, &Problem{Code: CodeInsurerError, Message: fmt.Sprintf("the insurer's pre-settlement %d+%d+%d does not add up to the bill's %d",
				out.FundPay, out.AcctPay, out.CashPay, b.Total)}, http.StatusBadGateway
		}
		e.pre = &Split{FundPay: out.FundPay, AcctPay: out.AcctPay, CashPay: out.CashPay}
		log.Info("pre-settled", "mdtrt_id", e.mdtrtID, "fund_pay", out.FundPay, "acct_pay", out.AcctPay, "cash_pay", out.CashPay)
	}
	msg.Insured, msg.PsnNo, msg.MdtrtID = true, psn, e.mdtrtID
	pre := *e.pre
	msg.Presettlement = &pre
	return msg, nil, 0
}

func insurerProblem(log *slog.Logger, step string, err error) (*Problem, int) {
	var r *refused
	if errors.As(err, &r) {
		log.Info("the insurer refused", "step", step, "err_msg", r.msg)
		return &Problem{Code: CodeInsurerError, Message: step + ": " + r.msg}, http.StatusBadGateway
	}
	log.Warn("the insurer did not answer", "step", step, "err", err)
	return &Problem{Code: CodeInsurerUnavailable, Message: step + ": the insurer did not answer; post the bill again"}, http.StatusServiceUnavailable
}

func (st *state) postRefund(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Hospital string `json:"hospital"`
	}
	if p := decodeBody(r, &in); p != nil {
		writeProblem(w, http.StatusBadRequest, p)
		return
	}
	billID := r.PathValue("bill_id")
	switch {
	case !billIDPattern.MatchString(billID):
		writeProblem(w, http.StatusBadRequest, invalid("/bill_id", "bill_id must be 1 to 64 printable ASCII characters"))
		return
	case !entityIDPattern.MatchString(in.Hospital):
		writeProblem(w, http.StatusBadRequest, invalid("/hospital", "hospital must be the hub's merchant id of the hospital or pharmacy"))
		return
	}
	payload, err := json.Marshal(RefundMessage{BillID: billID, Hospital: in.Hospital})
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, &Problem{Code: sdk.CodeInternal, Message: err.Error()})
		return
	}
	log := st.log.With("bill_id", billID, "hospital", in.Hospital)
	st.submit(r.Context(), w, log, sdk.Message{Type: TypeRefund, IdempotencyKey: "refund:" + in.Hospital + ":" + billID, Payload: payload})
}

// submit hands m to the hub and answers the HIS with the hub's answer.
func (st *state) submit(ctx context.Context, w http.ResponseWriter, log *slog.Logger, m sdk.Message) {
	ctx, cancel := context.WithTimeout(ctx, st.hubTimeout)
	defer cancel()
	res, err := st.hub.Submit(ctx, m)
	if err != nil {
		e := sdk.AsError(err)
		status := http.StatusInternalServerError
		if def, ok := schemas.LookupError(e.Code); ok && def.HTTPStatus >= 400 {
			status = def.HTTPStatus
		} else if ok {
			// A decline the hub gave as an error: the request was fine,
			// the card or account said no.
			status = http.StatusUnprocessableEntity
		} else if e.Retryable {
			status = http.StatusServiceUnavailable
		}
		log.Warn("the hub refused", "type", m.Type, "code", e.Code, "err", e.Message)
		writeProblem(w, status, &Problem{Code: e.Code, Field: e.Field, Message: e.Message})
		return
	}
	var status struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(res.Body, &status)
	log.Info("the hub answered", "type", m.Type, "status", status.Status, "duplicate", res.Duplicate)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Body)
}

func (st *state) getReconciliation(w http.ResponseWriter, r *http.Request) {
	rec, err := st.reconcile(r.Context(), r.URL.Query().Get("date"))
	if err != nil {
		e := sdk.AsError(err)
		status := http.StatusServiceUnavailable
		if e.Code == sdk.CodeInvalidRequest {
			status = http.StatusBadRequest
		}
		writeProblem(w, status, &Problem{Code: e.Code, Field: strings.Replace(e.Field, "/payload/", "/", 1), Message: e.Message})
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, p *Problem) { writeJSON(w, status, p) }
