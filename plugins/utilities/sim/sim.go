// Package sim is a utility company's billing host as the city's billers
// run it, for tests and demos of the utilities plugin: several billers
// (water, power, telecom, broadband, cable TV), each with its own rules on
// partial and over-payment; one bill per account and month, made up
// deterministically; payments idempotent by the payer's reference; and the
// day's payments as a reconciliation file, as billers send it the next day.
//
// It speaks HTTP and JSON. Every error is a JSON object
// {"code", "message", "field"} with a stable code (see the Code constants).
// Faults can be injected for tests: a delay, failing the next payment calls
// with 503, and applying a payment but dropping the answer, as a biller
// does when its answer is lost in a timeout.
//
//	GET  /health                                   {"status":"ok"}
//	GET  /billers                                  the billers and their rules
//	GET  /billers/{biller}/accounts/{account}/bill the account's current bill
//	POST /payments                                 pay a bill (idempotent by reference)
//	GET  /payments/{reference}                     what became of a reference
//	GET  /reconciliation?date=YYYY-MM-DD           the day's payments, as CSV
package sim

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Codes of the errors the simulator answers with.
const (
	CodeInvalidRequest    = "invalid_request"             // 400: the request is malformed; Field says where
	CodeBillerNotFound    = "biller_not_found"            // 404
	CodeAccountNotFound   = "account_not_found"           // 404
	CodePaymentNotFound   = "payment_not_found"           // 404: GET /payments/{reference}
	CodeNotFound          = "not_found"                   // 404: no such path
	CodeBillMismatch      = "bill_mismatch"               // 409: the payment quotes another bill than the current one
	CodeReferenceConflict = "reference_conflict"          // 409: the reference was used for a different payment
	CodeCurrencyMismatch  = "currency_mismatch"           // 422
	CodeInvalidAmount     = "invalid_amount"              // 422: not a positive amount
	CodePartialNotAllowed = "partial_payment_not_allowed" // 422
	CodeOverpayNotAllowed = "overpayment_not_allowed"     // 422
	CodeUnavailable       = "unavailable"                 // 503: injected fault; nothing was applied
)

const (
	// ReplayedHeader is set on an answer replayed for a reference seen before.
	ReplayedHeader = "Idempotent-Replayed"
	maxBody        = 64 << 10
	// maxReference is the longest payment reference the billers take.
	maxReference = 64
)

// Error is the body of every error answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Code + ": " + e.Message + " (at " + e.Field + ")"
	}
	return e.Code + ": " + e.Message
}

// PaymentRequest is the body of POST /payments. Money is in fen.
type PaymentRequest struct {
	Biller    string `json:"biller"`
	Account   string `json:"account"`
	BillID    string `json:"bill_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// Payment is a payment the biller applied, as POST /payments answers it.
type Payment struct {
	// Receipt is the biller's own id for the payment.
	Receipt   string `json:"receipt"`
	Reference string `json:"reference"`
	Biller    string `json:"biller"`
	Account   string `json:"account"`
	BillID    string `json:"bill_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	// Outstanding is what the bill still owes after this payment.
	Outstanding int64     `json:"outstanding"`
	PaidAt      time.Time `json:"paid_at"`
	// SettlementDate is the day file that lists the payment, YYYY-MM-DD.
	SettlementDate string `json:"settlement_date"`
}

// Lookup is the answer to GET /payments/{reference}: what the biller did
// with the first payment under that reference.
type Lookup struct {
	Reference string `json:"reference"`
	// Status is "applied" or "refused".
	Status  string         `json:"status"`
	Request PaymentRequest `json:"request"`
	Payment *Payment       `json:"payment,omitempty"`
	Error   *Error         `json:"error,omitempty"`
}

// Lookup statuses.
const (
	Applied = "applied"
	Refused = "refused"
)

// Options configure a Biller.
type Options struct {
	// Billers to simulate; DefaultBillers when empty.
	Billers []BillerSpec
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives one line per request; none when nil.
	Logger *slog.Logger
}

// Biller is the billing host. It is safe for concurrent use.
type Biller struct {
	now    func() time.Time
	log    *slog.Logger
	specs  []BillerSpec
	byCode map[string]BillerSpec

	mu       sync.Mutex
	bills    map[[2]string]*Bill // (biller, account) → this month's bill, once touched
	answers  map[string]*answer  // reference → the first answer
	payments []Payment           // applied, in order
	calls    int                 // POST /payments received

	delay    time.Duration
	failNext int
	dropNext int
}

// answer is what a reference was first answered.
type answer struct {
	req    PaymentRequest
	status int
	body   []byte
	lookup Lookup
}

// New returns a Biller with no payments.
func New(opts Options) *Biller {
	b := &Biller{now: opts.Now, log: opts.Logger, specs: opts.Billers,
		bills: map[[2]string]*Bill{}, answers: map[string]*answer{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if len(b.specs) == 0 {
		b.specs = DefaultBillers()
	}
	b.byCode = make(map[string]BillerSpec, len(b.specs))
	for _, s := range b.specs {
		b.byCode[s.Code] = s
	}
	return b
}

// Handler returns the HTTP API.
func (b *Biller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", b.slow(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.HandleFunc("GET /billers", b.slow(b.listBillers))
	mux.HandleFunc("GET /billers/{biller}/accounts/{account}/bill", b.slow(b.getBill))
	mux.HandleFunc("POST /payments", b.slow(b.pay))
	mux.HandleFunc("GET /payments/{reference}", b.slow(b.lookup))
	mux.HandleFunc("GET /reconciliation", b.slow(b.reconciliation))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &Error{Code: CodeNotFound, Message: r.Method + " " + r.URL.Path + " is not part of this API"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		mux.ServeHTTP(w, r)
		b.log.Debug("biller request", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
	})
}

// Start serves the API on addr (e.g. "127.0.0.1:0") and returns its base
// URL and a function that stops it, waiting for requests in flight.
func (b *Biller) Start(addr string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("biller simulator stopped", "err", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
			<-done
		})
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// SetDelay makes every API call wait d before it is handled; 0 ends it. A
// delayed payment is applied even if the caller gave up meanwhile, as a
// real host does.
func (b *Biller) SetDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delay = d
}

// FailNext makes the next n POST /payments answer 503 without applying
// anything.
func (b *Biller) FailNext(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = n
}

// DropNextAnswers makes the next n POST /payments apply the payment, then
// close the connection without answering: the payer sees a timeout, though
// the biller has booked the payment.
func (b *Biller) DropNextAnswers(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropNext = n
}

// Bill returns the current bill of (biller, account), as GET …/bill would.
func (b *Biller) Bill(biller, account string) (Bill, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bill, e := b.billLocked(biller, account)
	if e != nil {
		return Bill{}, e
	}
	return *bill, nil
}

// Payments returns the payments applied, in order.
func (b *Biller) Payments() []Payment {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.payments)
}

// Calls returns how many POST /payments the biller received, replays and
// failures included.
func (b *Biller) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Date returns the business date of t in the billers' zone, YYYY-MM-DD:
// the day file a payment made at t is listed in.
func Date(t time.Time) string { return t.In(Zone).Format(time.DateOnly) }

// slow plays the injected delay before h.
func (b *Biller) slow(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		d := b.delay
		b.mu.Unlock()
		if d > 0 {
			time.Sleep(d)
		}
		h(w, r)
	}
}

func (b *Biller) listBillers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"billers": b.specs})
}

func (b *Biller) getBill(w http.ResponseWriter, r *http.Request) {
	bill, err := b.Bill(r.PathValue("biller"), r.PathValue("account"))
	if err != nil {
		var e *Error
		errors.As(err, &e)
		writeError(w, http.StatusNotFound, e)
		return
	}
	writeJSON(w, http.StatusOK, bill)
}

// billLocked returns the bill of (biller, account), making it up on first
// use; b.mu is held.
func (b *Biller) billLocked(biller, account string) (*Bill, *Error) {
	spec, ok := b.byCode[biller]
	if !ok {
		return nil, &Error{Code: CodeBillerNotFound, Field: "biller", Message: fmt.Sprintf("no biller %q here", biller)}
	}
	if !validAccount(account) {
		return nil, &Error{Code: CodeAccountNotFound, Field: "account",
			Message: fmt.Sprintf("%q is not a %s account number (8 to 12 digits)", account, spec.Name)}
	}
	if !assigned(account) {
		return nil, &Error{Code: CodeAccountNotFound, Field: "account", Message: fmt.Sprintf("%s has no account %s", spec.Name, account)}
	}
	k := [2]string{biller, account}
	bill, ok := b.bills[k]
	if !ok {
		nb := newBill(spec, account, b.now())
		bill = &nb
		b.bills[k] = bill
	}
	return bill, nil
}

func (b *Biller) pay(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.calls++
	fail := b.failNext > 0
	if fail {
		b.failNext--
	}
	b.mu.Unlock()
	if fail {
		writeError(w, http.StatusServiceUnavailable, &Error{Code: CodeUnavailable, Message: "the billing host is busy; nothing was applied, try again"})
		return
	}
	req, e := decodePayment(w, r)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}

	b.mu.Lock()
	a, seen := b.answers[req.Reference]
	if seen && a.req != req {
		b.mu.Unlock()
		writeError(w, http.StatusConflict, &Error{Code: CodeReferenceConflict, Field: "reference",
			Message: fmt.Sprintf("reference %s was already used for a different payment", req.Reference)})
		return
	}
	if !seen {
		a = b.applyLocked(req)
		b.answers[req.Reference] = a
	}
	drop := b.dropNext > 0
	if drop {
		b.dropNext--
	}
	b.mu.Unlock()

	if drop {
		b.log.Info("biller dropping the answer", "reference", req.Reference)
		// Closes the connection with nothing written and no stack trace logged.
		panic(http.ErrAbortHandler)
	}
	if seen {
		w.Header().Set(ReplayedHeader, "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// applyLocked checks req against the bill and the biller's rules and books
// it if it passes; the answer, success or refusal, is what the reference
// answers from now on. b.mu is held.
func (b *Biller) applyLocked(req PaymentRequest) *answer {
	refuse := func(status int, e *Error) *answer {
		body, _ := json.Marshal(e)
		return &answer{req: req, status: status, body: body,
			lookup: Lookup{Reference: req.Reference, Status: Refused, Request: req, Error: e}}
	}
	bill, e := b.billLocked(req.Biller, req.Account)
	if e != nil {
		return refuse(http.StatusNotFound, e)
	}
	switch {
	case req.BillID != bill.ID:
		return refuse(http.StatusConflict, &Error{Code: CodeBillMismatch, Field: "bill_id",
			Message: fmt.Sprintf("account %s's current bill is %s, not %s", req.Account, bill.ID, req.BillID)})
	case req.Currency != bill.Currency:
		return refuse(http.StatusUnprocessableEntity, &Error{Code: CodeCurrencyMismatch, Field: "currency",
			Message: fmt.Sprintf("bills are paid in %s, not %s", bill.Currency, req.Currency)})
	case req.Amount <= 0:
		return refuse(http.StatusUnprocessableEntity, &Error{Code: CodeInvalidAmount, Field: "amount",
			Message: fmt.Sprintf("the amount must be a positive number of fen, not %d", req.Amount)})
	}
	if e := checkAmount(*bill, req.Amount); e != nil {
		return refuse(http.StatusUnprocessableEntity, e)
	}
	now := b.now().In(Zone).Truncate(time.Second)
	bill.Outstanding -= req.Amount
	bill.setStatus()
	p := Payment{
		Receipt:   fmt.Sprintf("R%s%06d", now.Format("20060102"), len(b.payments)+1),
		Reference: req.Reference, Biller: req.Biller, Account: req.Account, BillID: req.BillID,
		Amount: req.Amount, Currency: req.Currency, Outstanding: bill.Outstanding,
		PaidAt: now, SettlementDate: Date(now),
	}
	b.payments = append(b.payments, p)
	b.log.Info("biller payment applied", "reference", p.Reference, "receipt", p.Receipt, "biller", p.Biller,
		"account", p.Account, "amount", p.Amount, "outstanding", p.Outstanding)
	body, _ := json.Marshal(p)
	return &answer{req: req, status: http.StatusCreated, body: body,
		lookup: Lookup{Reference: req.Reference, Status: Applied, Request: req, Payment: &p}}
}

// checkAmount applies a biller's partial and over-payment rules to paying
// amount against bill. It returns nil when the biller would take it.
func checkAmount(bill Bill, amount int64) *Error {
	switch {
	case amount < bill.Outstanding && !bill.Partial:
		return &Error{Code: CodePartialNotAllowed, Field: "amount",
			Message: fmt.Sprintf("%s takes no partial payment: %d fen is less than the %d fen outstanding on %s", bill.Name, amount, bill.Outstanding, bill.ID)}
	case amount > bill.Outstanding && !bill.Over:
		if bill.Outstanding <= 0 {
			return &Error{Code: CodeOverpayNotAllowed, Field: "amount",
				Message: fmt.Sprintf("%s takes no payment in advance, and nothing is owed on %s", bill.Name, bill.ID)}
		}
		return &Error{Code: CodeOverpayNotAllowed, Field: "amount",
			Message: fmt.Sprintf("%s takes no over-payment: %d fen is more than the %d fen outstanding on %s", bill.Name, amount, bill.Outstanding, bill.ID)}
	}
	return nil
}

func (b *Biller) lookup(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("reference")
	b.mu.Lock()
	a, ok := b.answers[ref]
	b.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, &Error{Code: CodePaymentNotFound, Field: "reference", Message: fmt.Sprintf("no payment with reference %s", ref)})
		return
	}
	writeJSON(w, http.StatusOK, a.lookup)
}

// ReconciliationHeader is the first line of every day file.
var ReconciliationHeader = []string{"settlement_date", "biller", "account", "bill_id", "reference", "receipt", "amount", "currency", "paid_at"}

func (b *Biller) reconciliation(w http.ResponseWriter, r *http.Request) {
	date := r.URL.Query().Get("date")
	day, err := time.ParseInLocation(time.DateOnly, date, Zone)
	if err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRequest, Field: "date", Message: fmt.Sprintf("date must be YYYY-MM-DD, not %q", date)})
		return
	}
	date = day.Format(time.DateOnly)
	var rows [][]string
	for _, p := range b.Payments() {
		if p.SettlementDate == date {
			rows = append(rows, []string{p.SettlementDate, p.Biller, p.Account, p.BillID, p.Reference, p.Receipt,
				strconv.FormatInt(p.Amount, 10), p.Currency, p.PaidAt.Format(time.RFC3339)})
		}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="payments-%s.csv"`, date))
	cw := csv.NewWriter(w)
	_ = cw.Write(ReconciliationHeader)
	_ = cw.WriteAll(rows)
}

// decodePayment reads a POST /payments body strictly: unknown fields,
// missing fields and a malformed reference are refused with the field.
func decodePayment(w http.ResponseWriter, r *http.Request) (PaymentRequest, *Error) {
	var req PaymentRequest
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			want := "a string"
			if te.Type.Kind() == reflect.Int64 {
				want = "an integer number of fen"
			}
			return req, &Error{Code: CodeInvalidRequest, Field: te.Field, Message: fmt.Sprintf("%s must be %s, not %s", te.Field, want, te.Value)}
		}
		return req, &Error{Code: CodeInvalidRequest, Message: "the body is not a payment: " + err.Error()}
	}
	if _, err := d.Token(); err != io.EOF {
		return req, &Error{Code: CodeInvalidRequest, Message: "the body holds more than one JSON value"}
	}
	for _, f := range []struct{ name, val string }{
		{"biller", req.Biller}, {"account", req.Account}, {"bill_id", req.BillID}, {"currency", req.Currency}, {"reference", req.Reference},
	} {
		if f.val == "" {
			return req, &Error{Code: CodeInvalidRequest, Field: f.name, Message: f.name + " is required"}
		}
	}
	if !validReference(req.Reference) {
		return req, &Error{Code: CodeInvalidRequest, Field: "reference",
			Message: fmt.Sprintf("a reference is 1 to %d printable ASCII characters without spaces", maxReference)}
	}
	return req, nil
}

func validReference(s string) bool {
	if len(s) == 0 || len(s) > maxReference {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == '/' {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *Error) { writeJSON(w, status, e) }
