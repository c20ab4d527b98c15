// Package sim is the medical insurance platform as hospitals and
// pharmacies meet it, for tests and demos of the medical plugin. It follows
// the national platform's transaction sequence, one numbered transaction
// (infno) per step, all on one endpoint:
//
//	POST /api/{infno}   {"infno", "msgid", "input": {...}}
//	                    → {"infcode": 0 | -1, "err_msg", "output": {...}}
//
//	1101 person information     who the patient is, and whether insured
//	2201 registration           opens a visit: mdtrt_id
//	2204 fee-detail upload      the bill's line items for a visit
//	2206 pre-settlement         what the insurer would pay, paying nothing
//	2207 settlement             the split, booked: setl_id
//	2208 settlement reversal    undoes a settlement by setl_id
//	2601 correction (冲正)      undoes whatever a timed-out request did
//	3201 daily reconciliation   the day's live settlements, counted and summed
//
// Money is int64 fen throughout. A settlement splits the visit's total
// into fund_pay (the pooled fund, 统筹), acct_pay (the personal medical
// account, 个人账户) and cash_pay (what the patient pays, 自费), from the
// person's ratios in basis points. Every msgid is remembered with what it
// did, so a correction can undo it and a repeated msgid is answered as the
// first time.
//
// Faults can be injected for tests: settlements that are booked but
// answered too late (or never), settlements refused with infcode -1, and a
// delay on every request. State is in memory; an Insurer is safe for
// concurrent use.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// Transaction numbers (infno).
const (
	InfPerson      = "1101"
	InfRegister    = "2201"
	InfUploadFees  = "2204"
	InfPreSettle   = "2206"
	InfSettle      = "2207"
	InfReverse     = "2208"
	InfCorrect     = "2601"
	InfReconcile   = "3201"
	maxBody        = 1 << 20
	bpsDenominator = 10000
)

// Zone is the insurer's time zone: settlements count on its calendar days.
var Zone = time.FixedZone("CST", 8*3600)

// Person is an insured (or not) person as the insurer knows them.
type Person struct {
	PsnNo string `json:"psn_no"`
	// IDNo is the resident ID card number (certno).
	IDNo    string `json:"id_no"`
	Name    string `json:"name"`
	Insured bool   `json:"insured"`
	// FundRatioBps is the share of a visit's total the pooled fund pays,
	// in basis points: 7000 is 70%.
	FundRatioBps int64 `json:"fund_ratio_bps"`
	// AcctRatioBps is the share of the rest the personal medical account
	// may pay, in basis points; the remainder is cash.
	AcctRatioBps int64 `json:"acct_ratio_bps"`
}

// Split is how a total divides between payers, in fen.
type Split struct {
	Total   int64 `json:"total"`
	FundPay int64 `json:"fund_pay"`
	AcctPay int64 `json:"acct_pay"`
	CashPay int64 `json:"cash_pay"`
}

// SplitOf divides total by the ratios: the fund's share and the
// account's share of the rest are rounded down, cash takes the remainder,
// so the three always add up to total.
func SplitOf(total, fundBps, acctBps int64) Split {
	fund := total * fundBps / bpsDenominator
	acct := (total - fund) * acctBps / bpsDenominator
	return Split{Total: total, FundPay: fund, AcctPay: acct, CashPay: total - fund - acct}
}

// FeeLine is one line of an uploaded fee detail.
type FeeLine struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	UnitPrice int64  `json:"unit_price"`
	Quantity  int64  `json:"quantity"`
	Amount    int64  `json:"amount"`
}

// Settlement states.
const (
	Live      = "live"
	Reversed  = "reversed"  // by 2208
	Corrected = "corrected" // by 2601
)

// Settlement is one 2207 the insurer booked.
type Settlement struct {
	SetlID  string    `json:"setl_id"`
	MsgID   string    `json:"msgid"`
	PsnNo   string    `json:"psn_no"`
	MdtrtID string    `json:"mdtrt_id"`
	OrgCode string    `json:"org_code"`
	Date    string    `json:"date"`
	At      time.Time `json:"at"`
	State   string    `json:"state"`
	Split
}

// Reversal is one 2208 the insurer applied.
type Reversal struct {
	MsgID  string `json:"msgid"`
	SetlID string `json:"setl_id"`
	// Already is true when the settlement was already reversed: nothing
	// changed.
	Already bool `json:"already"`
}

// Correction is one 2601 the insurer answered.
type Correction struct {
	MsgID  string `json:"msgid"`
	OMsgID string `json:"omsgid"`
	OInfNo string `json:"oinfno"`
	// Applied says whether the original request had an effect that the
	// correction undid.
	Applied bool `json:"applied"`
}

// Options configure an Insurer.
type Options struct {
	// Persons known to the insurer; DefaultPersons when nil.
	Persons []Person
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives one line per request; none when nil.
	Logger *slog.Logger
}

// Insurer is the medical insurance platform. Make it with New.
type Insurer struct {
	now func() time.Time
	log *slog.Logger

	mu        sync.Mutex
	persons   map[string]*Person // psn_no → person
	byIDNo    map[string]string  // id_no → psn_no
	visits    map[string]*visit  // mdtrt_id → visit
	regs      map[string]string  // org_code + "/" + bill number → mdtrt_id
	setls     []*Settlement
	setlByID  map[string]*Settlement
	reversals []Reversal
	corrs     []Correction
	msgs      map[string]*applied // msgid → what it did and the answer
	calls     map[string]int
	override  map[string][2]int64 // psn_no → settlement ratios unlike pre-settlement's
	seq       int64

	delay       time.Duration
	timeoutNext int
	late        time.Duration
	failNext    int
	failMsg     string
	closed      chan struct{}
	closeOnce   sync.Once
}

type visit struct {
	id, psnNo, org, billNo, medType string
	pharmacy                        bool
	lines                           []FeeLine
	total                           int64
	uploaded                        bool
	live                            *Settlement // its live settlement, if any
}

// applied is what a msgid did: its infno, the answer it got, and the
// settlement it booked or reversed.
type applied struct {
	infno  string
	answer Response
	setl   *Settlement
}

// New returns an Insurer with no visits.
func New(opts Options) *Insurer {
	s := &Insurer{now: opts.Now, log: opts.Logger, persons: map[string]*Person{}, byIDNo: map[string]string{},
		visits: map[string]*visit{}, regs: map[string]string{}, setlByID: map[string]*Settlement{},
		msgs: map[string]*applied{}, calls: map[string]int{}, override: map[string][2]int64{}, closed: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	persons := opts.Persons
	if persons == nil {
		persons = DefaultPersons()
	}
	for _, p := range persons {
		s.AddPerson(p)
	}
	return s
}

// DefaultPersons are the demo's people: Alice and Bob are insured, Carol
// is not.
func DefaultPersons() []Person {
	return []Person{
		{PsnNo: "P3101000001", IDNo: "310101199001011234", Name: "Alice", Insured: true, FundRatioBps: 7000, AcctRatioBps: 5000},
		{PsnNo: "P3101000002", IDNo: "310101198502022345", Name: "Bob", Insured: true, FundRatioBps: 8000, AcctRatioBps: 10000},
		{PsnNo: "P3101000003", IDNo: "310101197003033456", Name: "Carol", Insured: false},
	}
}

// Seed is the JSON seed file: {"persons": [...]}.
type Seed struct {
	Persons []Person `json:"persons"`
}

// LoadSeed reads a seed file.
func LoadSeed(path string) ([]Person, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Seed
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, p := range s.Persons {
		if p.PsnNo == "" || p.IDNo == "" || p.Name == "" {
			return nil, fmt.Errorf("%s: persons[%d] needs psn_no, id_no and name", path, i)
		}
		if p.FundRatioBps < 0 || p.FundRatioBps > bpsDenominator || p.AcctRatioBps < 0 || p.AcctRatioBps > bpsDenominator {
			return nil, fmt.Errorf("%s: persons[%d]: ratios are basis points, 0 to 10000", path, i)
		}
	}
	return s.Persons, nil
}

// AddPerson adds or replaces a person.
func (s *Insurer) AddPerson(p Person) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := p
	s.persons[p.PsnNo] = &cp
	s.byIDNo[p.IDNo] = p.PsnNo
}

// OverrideSettlement makes the person's settlements (2207), and only
// those, use other ratios than pre-settlement (2206) does, as when the
// insurer's rules change between the two. fundBps < 0 ends it.
func (s *Insurer) OverrideSettlement(psnNo string, fundBps, acctBps int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fundBps < 0 {
		delete(s.override, psnNo)
		return
	}
	s.override[psnNo] = [2]int64{fundBps, acctBps}
}

// TimeoutNext makes the next n settlements (2207) book the settlement,
// then answer only after late; with late <= 0 they never answer, and the
// caller sees a timeout.
func (s *Insurer) TimeoutNext(n int, late time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timeoutNext, s.late = n, late
}

// FailNext makes the next n settlements (2207) answer infcode -1 with
// msg, booking nothing.
func (s *Insurer) FailNext(n int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failMsg = n, msg
}

// SetDelay makes every request wait d before it is handled; 0 ends it.
func (s *Insurer) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Close releases requests held by TimeoutNext. Start's stop calls it.
func (s *Insurer) Close() { s.closeOnce.Do(func() { close(s.closed) }) }

// Settlements returns every settlement booked, in order, in its current
// state.
func (s *Insurer) Settlements() []Settlement {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Settlement, len(s.setls))
	for i, st := range s.setls {
		out[i] = *st
	}
	return out
}

// LiveSettlements returns the settlements neither reversed nor corrected.
func (s *Insurer) LiveSettlements() []Settlement {
	var out []Settlement
	for _, st := range s.Settlements() {
		if st.State == Live {
			out = append(out, st)
		}
	}
	return out
}

// Reversals returns every 2208 applied, in order.
func (s *Insurer) Reversals() []Reversal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reversals)
}

// Corrections returns every 2601 answered, in order.
func (s *Insurer) Corrections() []Correction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.corrs)
}

// Calls returns how many requests of infno the insurer received.
func (s *Insurer) Calls(infno string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[infno]
}

// Visit returns a visit's person, total and fee lines.
func (s *Insurer) Visit(mdtrtID string) (psnNo string, total int64, lines []FeeLine, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.visits[mdtrtID]
	if v == nil {
		return "", 0, nil, false
	}
	return v.psnNo, v.total, slices.Clone(v.lines), true
}

// Register opens a visit directly, as 2201 and 2204 would, and returns its
// mdtrt_id: for tests that settle without going through a hospital.
func (s *Insurer) Register(psnNo, orgCode, billNo string, lines []FeeLine) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.persons[psnNo]; p == nil || !p.Insured {
		return "", fmt.Errorf("person %s is not insured", psnNo)
	}
	v := s.registerLocked(psnNo, orgCode, billNo, "11", false)
	if err := s.uploadLocked(v, lines); err != nil {
		return "", err
	}
	return v.id, nil
}

// Settle books a settlement of a visit directly, as a 2207 under msgid
// would, for tests that reverse or reconcile settlements made elsewhere.
func (s *Insurer) Settle(msgid, psnNo, mdtrtID string) (Settlement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.visits[mdtrtID]
	if v == nil {
		return Settlement{}, fmt.Errorf("no visit %s", mdtrtID)
	}
	in, _ := json.Marshal(SettleInput{PsnNo: psnNo, MdtrtID: mdtrtID, Total: v.total})
	r, st := s.settle(msgid, in)
	if r.InfCode != 0 {
		return Settlement{}, errors.New(r.ErrMsg)
	}
	if st == nil {
		st = v.live
	}
	s.msgs[msgid] = &applied{infno: InfSettle, answer: r, setl: st}
	return *st, nil
}

// Request is the envelope of every request.
type Request struct {
	InfNo string          `json:"infno"`
	MsgID string          `json:"msgid"`
	Input json.RawMessage `json:"input"`
}

// Response is the envelope of every answer.
type Response struct {
	InfCode int    `json:"infcode"`
	ErrMsg  string `json:"err_msg,omitempty"`
	// RefMsgID echoes the request's msgid.
	RefMsgID string `json:"inf_refmsgid,omitempty"`
	Output   any    `json:"output,omitempty"`
}

// Inputs and outputs of the transactions.
type (
	PersonInput struct {
		CertNo  string `json:"certno"`
		PsnName string `json:"psn_name"`
	}
	PersonOutput struct {
		PsnNo   string `json:"psn_no,omitempty"`
		CertNo  string `json:"certno"`
		PsnName string `json:"psn_name,omitempty"`
		Insured bool   `json:"insured"`
	}
	RegisterInput struct {
		PsnNo   string `json:"psn_no"`
		OrgCode string `json:"fixmedins_code"`
		// BillNo is the hospital's own number for the visit (ipt_otp_no):
		// registering it again returns the same visit.
		BillNo  string `json:"ipt_otp_no"`
		MedType string `json:"med_type"`
	}
	RegisterOutput struct {
		MdtrtID string `json:"mdtrt_id"`
	}
	UploadInput struct {
		PsnNo string `json:"psn_no"`
		// MdtrtID is the visit; a pharmacy leaves it empty and the
		// insurer opens a pharmacy visit for the bill number.
		MdtrtID string    `json:"mdtrt_id,omitempty"`
		OrgCode string    `json:"fixmedins_code"`
		BillNo  string    `json:"ipt_otp_no"`
		Lines   []FeeLine `json:"feedetail"`
	}
	UploadOutput struct {
		MdtrtID string `json:"mdtrt_id"`
		Count   int    `json:"count"`
		Total   int64  `json:"total"`
	}
	SettleInput struct {
		PsnNo   string `json:"psn_no"`
		MdtrtID string `json:"mdtrt_id"`
		// Total (medfee_sumamt) must be the uploaded fees' total.
		Total int64 `json:"medfee_sumamt"`
	}
	SettleOutput struct {
		SetlID  string `json:"setl_id,omitempty"`
		MdtrtID string `json:"mdtrt_id"`
		PsnNo   string `json:"psn_no"`
		Split
	}
	ReverseInput struct {
		SetlID  string `json:"setl_id"`
		PsnNo   string `json:"psn_no"`
		MdtrtID string `json:"mdtrt_id"`
	}
	ReverseOutput struct {
		SetlID  string `json:"setl_id"`
		Already bool   `json:"already"`
	}
	CorrectInput struct {
		OMsgID string `json:"omsgid"`
		OInfNo string `json:"oinfno"`
	}
	CorrectOutput struct {
		Applied bool   `json:"applied"`
		Message string `json:"message"`
	}
	ReconcileInput struct {
		Date string `json:"stmt_date"`
	}
	ReconcileOutput struct {
		Date    string `json:"stmt_date"`
		Count   int    `json:"count"`
		FundPay int64  `json:"fund_pay"`
		AcctPay int64  `json:"acct_pay"`
		CashPay int64  `json:"cash_pay"`
	}
)

// Handler returns the HTTP API.
func (s *Insurer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{infno}", s.serve)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

// Start serves the API on addr (e.g. "127.0.0.1:0") and returns its base
// URL and a function that stops it.
func (s *Insurer) Start(addr string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("insurer simulator stopped", "err", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.Close()
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

func (s *Insurer) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	infno := r.PathValue("infno")
	var req Request
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusOK, Response{InfCode: -1, ErrMsg: "the request is not valid JSON: " + err.Error()})
		return
	}
	switch {
	case req.InfNo != infno:
		writeJSON(w, http.StatusOK, Response{InfCode: -1, RefMsgID: req.MsgID, ErrMsg: fmt.Sprintf("infno %q does not match the path's %q", req.InfNo, infno)})
		return
	case req.MsgID == "" || len(req.MsgID) > 64:
		writeJSON(w, http.StatusOK, Response{InfCode: -1, RefMsgID: req.MsgID, ErrMsg: "msgid must be 1 to 64 characters"})
		return
	}
	s.mu.Lock()
	s.calls[infno]++
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 && !s.wait(r.Context(), delay) {
		return
	}
	resp, late, hold := s.dispatch(req)
	resp.RefMsgID = req.MsgID
	s.log.Debug("insurer request", "infno", infno, "msgid", req.MsgID, "infcode", resp.InfCode, "err_msg", resp.ErrMsg, "took", time.Since(start))
	if hold {
		if late <= 0 {
			select {
			case <-r.Context().Done():
			case <-s.closed:
			}
			return
		}
		if !s.wait(r.Context(), late) {
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// wait sleeps d unless the client gives up or the insurer closes first.
func (s *Insurer) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

func fail(format string, args ...any) Response {
	return Response{InfCode: -1, ErrMsg: fmt.Sprintf(format, args...)}
}

func ok(out any) Response { return Response{Output: out} }

// dispatch answers one request. A msgid seen before gets its first answer.
// hold says the answer must be held back by late (a TimeoutNext fault).
func (s *Insurer) dispatch(req Request) (resp Response, late time.Duration, hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, seen := s.msgs[req.MsgID]; seen {
		if prev.infno != req.InfNo {
			return fail("msgid %s was already used for transaction %s", req.MsgID, prev.infno), 0, false
		}
		return prev.answer, 0, false
	}
	a := &applied{infno: req.InfNo}
	switch req.InfNo {
	case InfPerson:
		a.answer = s.person(req.Input)
	case InfRegister:
		a.answer = s.register(req.Input)
	case InfUploadFees:
		a.answer = s.upload(req.Input)
	case InfPreSettle:
		a.answer = s.preSettle(req.Input)
	case InfSettle:
		if s.failNext > 0 {
			s.failNext--
			a.answer = fail("%s", s.failMsg)
			break
		}
		a.answer, a.setl = s.settle(req.MsgID, req.Input)
		if a.setl != nil && s.timeoutNext > 0 {
			s.timeoutNext--
			hold, late = true, s.late
		}
	case InfReverse:
		a.answer, a.setl = s.reverse(req.MsgID, req.Input)
	case InfCorrect:
		a.answer = s.correct(req.MsgID, req.Input)
	case InfReconcile:
		a.answer = s.reconcile(req.Input)
	default:
		return fail("unknown transaction %s", req.InfNo), 0, false
	}
	s.msgs[req.MsgID] = a
	return a.answer, late, hold
}

func decode(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return errors.New("input is missing")
	}
	return json.Unmarshal(raw, v)
}

func (s *Insurer) person(raw json.RawMessage) Response {
	var in PersonInput
	if err := decode(raw, &in); err != nil || in.CertNo == "" {
		return fail("1101 needs input.certno")
	}
	psnNo, known := s.byIDNo[in.CertNo]
	if !known {
		return ok(PersonOutput{CertNo: in.CertNo, Insured: false})
	}
	p := s.persons[psnNo]
	if in.PsnName != "" && in.PsnName != p.Name {
		return fail("the name given for certificate %s does not match the insurer's", in.CertNo)
	}
	return ok(PersonOutput{PsnNo: p.PsnNo, CertNo: p.IDNo, PsnName: p.Name, Insured: p.Insured})
}

func (s *Insurer) insured(psnNo string) (*Person, *Response) {
	p := s.persons[psnNo]
	if p == nil {
		r := fail("no person %s", psnNo)
		return nil, &r
	}
	if !p.Insured {
		r := fail("person %s is not insured", psnNo)
		return nil, &r
	}
	return p, nil
}

func (s *Insurer) register(raw json.RawMessage) Response {
	var in RegisterInput
	if err := decode(raw, &in); err != nil || in.PsnNo == "" || in.OrgCode == "" || in.BillNo == "" {
		return fail("2201 needs input.psn_no, input.fixmedins_code and input.ipt_otp_no")
	}
	if _, r := s.insured(in.PsnNo); r != nil {
		return *r
	}
	if id, seen := s.regs[in.OrgCode+"/"+in.BillNo]; seen {
		if v := s.visits[id]; v.psnNo != in.PsnNo {
			return fail("visit %s of %s is another person's", in.BillNo, in.OrgCode)
		}
		return ok(RegisterOutput{MdtrtID: id})
	}
	v := s.registerLocked(in.PsnNo, in.OrgCode, in.BillNo, in.MedType, false)
	return ok(RegisterOutput{MdtrtID: v.id})
}

func (s *Insurer) registerLocked(psnNo, org, billNo, medType string, pharmacy bool) *visit {
	if id, seen := s.regs[org+"/"+billNo]; seen {
		return s.visits[id]
	}
	s.seq++
	prefix := "MD"
	if pharmacy {
		prefix = "PH"
	}
	v := &visit{id: fmt.Sprintf("%s%s%08d", prefix, s.now().In(Zone).Format("20060102"), s.seq),
		psnNo: psnNo, org: org, billNo: billNo, medType: medType, pharmacy: pharmacy}
	s.visits[v.id] = v
	s.regs[org+"/"+billNo] = v.id
	return v
}

func (s *Insurer) upload(raw json.RawMessage) Response {
	var in UploadInput
	if err := decode(raw, &in); err != nil || in.PsnNo == "" || in.OrgCode == "" || in.BillNo == "" {
		return fail("2204 needs input.psn_no, input.fixmedins_code and input.ipt_otp_no")
	}
	if _, r := s.insured(in.PsnNo); r != nil {
		return *r
	}
	var v *visit
	if in.MdtrtID == "" {
		v = s.registerLocked(in.PsnNo, in.OrgCode, in.BillNo, "41", true)
	} else if v = s.visits[in.MdtrtID]; v == nil {
		return fail("no visit %s", in.MdtrtID)
	}
	if v.psnNo != in.PsnNo {
		return fail("visit %s is another person's", v.id)
	}
	if v.live != nil {
		return fail("visit %s is settled (%s); reverse the settlement before uploading fees again", v.id, v.live.SetlID)
	}
	if err := s.uploadLocked(v, in.Lines); err != nil {
		return fail("%v", err)
	}
	return ok(UploadOutput{MdtrtID: v.id, Count: len(v.lines), Total: v.total})
}

// uploadLocked replaces the visit's fee details: uploading again is how a
// hospital corrects them before settlement.
func (s *Insurer) uploadLocked(v *visit, lines []FeeLine) error {
	if len(lines) == 0 {
		return errors.New("feedetail is empty")
	}
	var total int64
	for i, l := range lines {
		if l.Code == "" || l.UnitPrice < 0 || l.Quantity <= 0 || l.Amount < 0 {
			return fmt.Errorf("feedetail[%d] needs a code, a price >= 0, a quantity >= 1 and an amount >= 0", i)
		}
		if l.UnitPrice != 0 && l.Quantity > (1<<62)/l.UnitPrice || l.UnitPrice*l.Quantity != l.Amount {
			return fmt.Errorf("feedetail[%d]: amount %d is not price %d × quantity %d", i, l.Amount, l.UnitPrice, l.Quantity)
		}
		total += l.Amount
	}
	v.lines, v.total, v.uploaded = slices.Clone(lines), total, true
	return nil
}

// settleable finds the visit a 2206 or 2207 is for and checks the total.
func (s *Insurer) settleable(raw json.RawMessage, infno string) (*visit, *Person, *Response) {
	var in SettleInput
	if err := decode(raw, &in); err != nil || in.PsnNo == "" || in.MdtrtID == "" {
		r := fail("%s needs input.psn_no, input.mdtrt_id and input.medfee_sumamt", infno)
		return nil, nil, &r
	}
	p, r := s.insured(in.PsnNo)
	if r != nil {
		return nil, nil, r
	}
	v := s.visits[in.MdtrtID]
	switch {
	case v == nil:
		r := fail("no visit %s", in.MdtrtID)
		return nil, nil, &r
	case v.psnNo != in.PsnNo:
		r := fail("visit %s is another person's", in.MdtrtID)
		return nil, nil, &r
	case !v.uploaded:
		r := fail("visit %s has no fee details uploaded (2204)", in.MdtrtID)
		return nil, nil, &r
	case v.total != in.Total:
		r := fail("medfee_sumamt %d is not the uploaded fees' total %d", in.Total, v.total)
		return nil, nil, &r
	}
	return v, p, nil
}

func (s *Insurer) preSettle(raw json.RawMessage) Response {
	v, p, r := s.settleable(raw, InfPreSettle)
	if r != nil {
		return *r
	}
	return ok(SettleOutput{MdtrtID: v.id, PsnNo: v.psnNo, Split: SplitOf(v.total, p.FundRatioBps, p.AcctRatioBps)})
}

// settle books a settlement, or answers the visit's live one: a visit is
// settled once until it is reversed.
func (s *Insurer) settle(msgid string, raw json.RawMessage) (Response, *Settlement) {
	v, p, r := s.settleable(raw, InfSettle)
	if r != nil {
		return *r, nil
	}
	if st := v.live; st != nil {
		return ok(SettleOutput{SetlID: st.SetlID, MdtrtID: v.id, PsnNo: v.psnNo, Split: st.Split}), nil
	}
	fund, acct := p.FundRatioBps, p.AcctRatioBps
	if o, ok := s.override[p.PsnNo]; ok {
		fund, acct = o[0], o[1]
	}
	s.seq++
	now := s.now()
	st := &Settlement{SetlID: fmt.Sprintf("ST%s%08d", now.In(Zone).Format("20060102"), s.seq), MsgID: msgid,
		PsnNo: v.psnNo, MdtrtID: v.id, OrgCode: v.org, Date: now.In(Zone).Format(time.DateOnly), At: now,
		State: Live, Split: SplitOf(v.total, fund, acct)}
	s.setls = append(s.setls, st)
	s.setlByID[st.SetlID] = st
	v.live = st
	return ok(SettleOutput{SetlID: st.SetlID, MdtrtID: v.id, PsnNo: v.psnNo, Split: st.Split}), st
}

func (s *Insurer) reverse(msgid string, raw json.RawMessage) (Response, *Settlement) {
	var in ReverseInput
	if err := decode(raw, &in); err != nil || in.SetlID == "" {
		return fail("2208 needs input.setl_id"), nil
	}
	st := s.setlByID[in.SetlID]
	switch {
	case st == nil:
		return fail("no settlement %s", in.SetlID), nil
	case in.PsnNo != "" && in.PsnNo != st.PsnNo, in.MdtrtID != "" && in.MdtrtID != st.MdtrtID:
		return fail("settlement %s is not of that person and visit", in.SetlID), nil
	case st.State != Live:
		s.reversals = append(s.reversals, Reversal{MsgID: msgid, SetlID: st.SetlID, Already: true})
		return ok(ReverseOutput{SetlID: st.SetlID, Already: true}), nil
	}
	s.unbook(st, Reversed)
	s.reversals = append(s.reversals, Reversal{MsgID: msgid, SetlID: st.SetlID})
	return ok(ReverseOutput{SetlID: st.SetlID}), st
}

func (s *Insurer) unbook(st *Settlement, state string) {
	st.State = state
	if v := s.visits[st.MdtrtID]; v != nil && v.live == st {
		v.live = nil
	}
}

// correct undoes what the request omsgid did: a settlement it booked is
// cancelled, a settlement it reversed is reinstated (unless the visit was
// settled again meanwhile). Anything else, or a msgid never seen, has
// nothing to correct.
func (s *Insurer) correct(msgid string, raw json.RawMessage) Response {
	var in CorrectInput
	if err := decode(raw, &in); err != nil || in.OMsgID == "" {
		return fail("2601 needs input.omsgid")
	}
	c := Correction{MsgID: msgid, OMsgID: in.OMsgID, OInfNo: in.OInfNo}
	out := CorrectOutput{Message: "nothing to correct"}
	if a := s.msgs[in.OMsgID]; a != nil && a.setl != nil {
		c.OInfNo = a.infno
		st := a.setl
		switch {
		case a.infno == InfSettle && st.State == Live:
			s.unbook(st, Corrected)
			c.Applied, out.Applied, out.Message = true, true, "settlement "+st.SetlID+" cancelled"
		case a.infno == InfReverse && st.State == Reversed:
			if v := s.visits[st.MdtrtID]; v != nil && v.live == nil {
				st.State, v.live = Live, st
				c.Applied, out.Applied, out.Message = true, true, "settlement "+st.SetlID+" reinstated"
			}
		default:
			out.Message = "already corrected"
		}
		a.setl = nil // a correction is applied once
	}
	s.corrs = append(s.corrs, c)
	return ok(out)
}

func (s *Insurer) reconcile(raw json.RawMessage) Response {
	var in ReconcileInput
	if err := decode(raw, &in); err != nil {
		return fail("3201 needs input.stmt_date")
	}
	if _, err := time.Parse(time.DateOnly, in.Date); err != nil {
		return fail("stmt_date %q is not YYYY-MM-DD", in.Date)
	}
	out := ReconcileOutput{Date: in.Date}
	for _, st := range s.setls {
		if st.State == Live && st.Date == in.Date {
			out.Count++
			out.FundPay += st.FundPay
			out.AcctPay += st.AcctPay
			out.CashPay += st.CashPay
		}
	}
	return ok(out)
}

// Date is the insurer's calendar day of t, YYYY-MM-DD.
func Date(t time.Time) string { return t.In(Zone).Format(time.DateOnly) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
