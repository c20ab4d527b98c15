package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/payments"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/sdk"
)

var rewrite = flag.Bool("rewrite", false, "write the scripts' expected output from what the commands print now")

// TestScripts runs every script in testdata against each store driver,
// with a real ledger engine and card service and a fake bank acquirer
// plugin. A script is a list of commands, each followed by "----" and what
// it prints, up to a blank line; lines starting with # are comments. The
// output is the same on both drivers, so -rewrite writes it from SQLite.
//
//	card NAME [topup=N] [medical=N]    issue a standard card, its cash purse
//	                                   topped up with N, its medical purse too
//	link NAME                          link a bank card (token tok-NAME) to it
//	bank approve|decline RC|down|crash the acquirer's answer to what follows;
//	                                   crash: it authorises, and the hub stops
//	                                   before it hears the answer
//	bank                               what the acquirer was asked since the
//	                                   last such command
//	pay KEY CARD AMOUNT [pin=P]        card.payment.v1 at merchant M1
//	bankpay KEY AMOUNT [hold]          card.payment.v1 (card.hold.v1 with
//	                                   hold) of a bank card at terminal T1
//	reverse KEY PAYMENT-KEY [kind=K] [amount=N]  card.reversal.v1
//	hold KEY CARD AMOUNT               card.hold.v1
//	capture KEY HOLD-KEY [amount=N]    card.capture.v1
//	void KEY HOLD-KEY                  card.void.v1
//	inquire CARD                       card.balance_inquiry.v1
//	insurer settle FUND ACCT CASH|refuse|crash
//	                                   the insurer's answer to what follows;
//	                                   crash: it settles, and the hub stops
//	                                   before it hears the answer
//	insurer                            what the insurer was asked since the
//	                                   last such command
//	bill ID CARD TOTAL [uninsured]     medical.bill.v1 from the hospital's
//	                                   plugin, under key bill:H1:ID
//	refund KEY ID                      medical.refund.v1 of bill ID
//	balance CARD                       the card's purses: posted, pending, available
//	saga KEY                           the saga of a request: kind, state, step
//	sagas                              the open sagas
//	restart                            a new ledger engine, card service and
//	                                   processor on the same store
//	recover                            RecoverSagas with no grace period
//	verify                             ledger verify finds no problem
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
				runScript(t, f, st, *rewrite && strings.HasSuffix(t.Name(), "/sqlite"))
			})
		})
	}
}

// block is a script's command with the output it must print, and the
// comments and blank lines before it.
type block struct {
	pre     []string
	line    int
	command string
	want    string
}

func parseScript(t *testing.T, file string) (blocks []block, tail []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			continue
		}
		bl := block{pre: pre, line: i + 1, command: l}
		pre = nil
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: a command is followed by ----", file, i+1)
		}
		i += 2
		var out []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			out = append(out, lines[i])
		}
		bl.want = strings.Join(out, "\n")
		blocks = append(blocks, bl)
	}
	return blocks, pre
}

func runScript(t *testing.T, file string, st store.Store, rewrite bool) {
	blocks, tail := parseScript(t, file)
	e := newEnv(t, st)
	var out strings.Builder
	for _, b := range blocks {
		got := strings.TrimRight(e.run(t, b.command), "\n")
		if rewrite {
			for _, l := range b.pre {
				out.WriteString(l + "\n")
			}
			out.WriteString(b.command + "\n----\n" + got + "\n\n")
			continue
		}
		if got != b.want {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", filepath.Base(file), b.line, b.command, got, b.want)
		}
	}
	if rewrite {
		for _, l := range tail {
			out.WriteString(l + "\n")
		}
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Names the scripts' hub uses.
const (
	plugin         = "pos"
	bankPlugin     = "unionpay"
	merchant       = "M1"
	terminal       = "T1"
	bankCardPAN    = "6228480012345674019"
	hospitalPlugin = "hospital"
	hospital       = "H1"
)

// env is a hub's payments on a real store, with a fake acquirer.
type env struct {
	t       *testing.T
	st      store.Store
	eng     *ledger.Engine
	svc     *cards.Service
	proc    *payments.Processor
	bank    *fakeBank
	insurer *fakeInsurer
	cards   map[string]string // script name → card number
}

// plugins routes the hub's messages to the fake acquirer or the fake
// insurer's plugin.
type plugins struct {
	bank    *fakeBank
	insurer *fakeInsurer
}

func (p plugins) Send(ctx context.Context, to string, m sdk.Message) ([]sdk.Message, error) {
	if to == hospitalPlugin {
		return p.insurer.Send(ctx, m)
	}
	return p.bank.Send(ctx, to, m)
}

func newEnv(t *testing.T, st store.Store) *env {
	e := &env{t: t, st: st, bank: &fakeBank{mode: "approve", answers: map[string]json.RawMessage{}},
		insurer: &fakeInsurer{mode: []string{"refuse"}, answers: map[string]json.RawMessage{}}, cards: map[string]string{}}
	e.start()
	for _, m := range []cards.MerchantRequest{
		{ID: merchant, Name: "Corner shop", MCC: "5411", FeeRateBps: 60, SettlementAccount: "6222000011112222"},
		{ID: hospital, Name: "City hospital", MCC: "8062", SettlementAccount: "6222000011113333"},
	} {
		if _, err := e.svc.AddMerchant(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.AddTerminal(context.Background(), cards.TerminalRequest{ID: terminal, Merchant: merchant}); err != nil {
		t.Fatal(err)
	}
	return e
}

// start opens the ledger engine and the services over the store, as a hub
// starting does.
func (e *env) start() {
	cat, err := catalog.Default()
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := ledger.Open(context.Background(), e.st, ledger.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { eng.Close() })
	e.eng = eng
	e.svc = cards.New(eng, cat, cards.Options{})
	e.proc = payments.New(payments.Options{Service: e.svc, Channels: map[string]string{plugin: "retail", hospitalPlugin: "medical"},
		IssuerPrefix: e.svc.IssuerPrefix(), BankPlugin: bankPlugin, Sagas: e.st, BankTimeout: 5 * time.Second})
	e.proc.SetPlugins(plugins{bank: e.bank, insurer: e.insurer})
	e.bank.st, e.insurer.st = e.st, e.st
}

// errCrash is what the fake acquirer panics with to stop the request that
// asked it, as a hub killed while it waits for the bank.
var errCrash = errors.New("the hub stopped")

func (e *env) run(t *testing.T, command string) string {
	ctx := context.Background()
	f := strings.Fields(command)
	args, opts := positional(f[1:])
	need := func(n int) {
		if len(args) != n {
			t.Fatalf("%s: want %d arguments", command, n)
		}
	}
	switch f[0] {
	case "card":
		need(1)
		out, err := e.svc.Issue(ctx, cards.Call{}, cards.IssueRequest{
			Holder:  cards.Holder{Name: "Li Lei", IDType: "resident_id", IDNumber: "310101199001011234"},
			Product: "standard"})
		if err != nil {
			t.Fatal(err)
		}
		number := out.Result.(*cards.IssueResult).Number
		e.cards[args[0]] = number
		for _, purse := range []string{"cash", "medical"} {
			n := opts[purse]
			if purse == "cash" {
				n = opts["topup"]
			}
			if n == "" {
				continue
			}
			if _, err := e.svc.TopUp(ctx, cards.Call{}, cards.TopUpRequest{Card: number, Amount: atoi(t, n), Currency: "CNY",
				Purse: purse}); err != nil {
				t.Fatal(err)
			}
		}
		return e.balance(args[0])
	case "link":
		need(1)
		if err := e.st.LinkBankCard(ctx, store.LinkedBankCard{Card: e.card(args[0]), Token: "tok-" + args[0],
			MaskedPAN: "622848*********4019", Last4: "4019", LinkedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		return "linked tok-" + args[0]
	case "bank":
		if len(args) == 0 {
			return e.bank.journal()
		}
		e.bank.set(strings.Join(args, " "))
		return "bank " + strings.Join(args, " ")
	case "pay", "hold":
		need(3)
		typ := sdk.TypeCardPayment
		if f[0] == "hold" {
			typ = sdk.TypeCardHold
		}
		return e.submit(args[0], typ, sdk.CardPayment{Card: e.card(args[1]), Merchant: merchant,
			Amount: atoi(t, args[2]), Currency: "CNY", PIN: opts["pin"]})
	case "bankpay":
		typ := sdk.TypeCardPayment
		if len(args) == 3 && args[2] == "hold" {
			typ, args = sdk.TypeCardHold, args[:2]
		}
		need(2)
		return e.submit(args[0], typ, sdk.CardPayment{Card: bankCardPAN, Expiry: "3012", Merchant: merchant, Terminal: terminal,
			Amount: atoi(t, args[1]), Currency: "CNY"})
	case "reverse":
		need(2)
		return e.submit(args[0], sdk.TypeCardReversal, sdk.CardReversal{PaymentKey: args[1], Kind: opts["kind"],
			Amount: atoi(t, opts["amount"])})
	case "capture":
		need(2)
		return e.submit(args[0], sdk.TypeCardCapture, sdk.CardCapture{HoldKey: args[1], Amount: atoi(t, opts["amount"])})
	case "void":
		need(2)
		return e.submit(args[0], sdk.TypeCardVoid, sdk.CardVoid{HoldKey: args[1]})
	case "inquire":
		need(1)
		return e.submit("", sdk.TypeCardBalanceInquiry, sdk.CardBalanceInquiry{Card: e.card(args[0])})
	case "insurer":
		if len(args) == 0 {
			return e.insurer.journal()
		}
		e.insurer.set(args)
		return "insurer " + strings.Join(args, " ")
	case "bill":
		if len(args) == 4 && args[3] == "uninsured" {
			args = args[:3]
			opts["uninsured"] = "y"
		}
		need(3)
		insured := opts["uninsured"] == ""
		b := sdk.MedicalBill{BillID: args[0], Hospital: hospital, Kind: sdk.BillOutpatient, Card: e.card(args[1]),
			Total: atoi(t, args[2]), Currency: "CNY", Insured: insured}
		if insured {
			b.PsnNo, b.MdtrtID = "P-"+args[1], "V-"+args[0]
		}
		return e.submitFrom(hospitalPlugin, billKey(args[0]), sdk.TypeMedicalBill, b)
	case "refund":
		need(2)
		return e.submitFrom(hospitalPlugin, args[0], sdk.TypeMedicalRefund, sdk.MedicalRefund{BillID: args[1], Hospital: hospital})
	case "balance":
		need(1)
		return e.balance(args[0])
	case "saga":
		need(1)
		s, err := e.st.GetSaga(ctx, payments.OperatorPrefix+plugin, args[0])
		if errors.Is(err, store.ErrNotFound) {
			s, err = e.st.GetSaga(ctx, payments.OperatorPrefix+hospitalPlugin, billKey(args[0]))
		}
		if errors.Is(err, store.ErrNotFound) {
			return "no saga"
		} else if err != nil {
			t.Fatal(err)
		}
		return showSaga(s)
	case "sagas":
		open, err := e.st.OpenSagas(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, s := range open {
			lines = append(lines, s.Key+": "+showSaga(s))
		}
		if len(lines) == 0 {
			return "none open"
		}
		return strings.Join(lines, "\n")
	case "restart":
		e.eng.Close()
		e.start()
		return "restarted"
	case "recover":
		n, err := e.proc.RecoverSagas(ctx, 0)
		if err != nil {
			return fmt.Sprintf("recovered %d, error %v", n, err)
		}
		return fmt.Sprintf("recovered %d", n)
	case "verify":
		r, err := ledger.Verify(ctx, e.st)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			return fmt.Sprintf("problems: %v", r.Problems)
		}
		return "ok"
	}
	t.Fatalf("unknown command %q", command)
	return ""
}

// billKey is the idempotency key the hospital's plugin sends bill id
// under, which a refund finds the bill by.
func billKey(id string) string { return "bill:" + hospital + ":" + id }

// submit applies the POS plugin's message and shows its answer.
func (e *env) submit(key, typ string, payload any) string {
	return e.submitFrom(plugin, key, typ, payload)
}

// submitFrom applies a plugin's message and shows its answer.
func (e *env) submitFrom(from, key, typ string, payload any) (shown string) {
	body, err := json.Marshal(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	m := sdk.Message{ID: sdk.NewID(), Type: typ, IdempotencyKey: key, Payload: body}
	defer func() {
		if r := recover(); r != nil {
			if r != errCrash {
				panic(r)
			}
			shown = "crashed: no answer"
		}
	}()
	out, err := e.proc.Apply(context.Background(), from, typ, m)
	if err != nil {
		return "error " + fault.CodeOf(err)
	}
	return e.showAnswer(out)
}

// showAnswer prints what a plugin reads of an answer: its status and
// reason, amount, legs and the card's balance, never ids or times, which
// differ between runs.
func (e *env) showAnswer(out ledger.Outcome) string {
	var r struct {
		Status   string    `json:"status"`
		Reason   string    `json:"reason"`
		Kind     string    `json:"kind"`
		Amount   int64     `json:"amount"`
		Captured *int64    `json:"captured"`
		Legs     []sdk.Leg `json:"legs"`
		Balance  *int64    `json:"balance"`
		Total    int64     `json:"total"`
		sdk.MedicalSplit
		Medical  int64  `json:"medical_purse"`
		Cash     int64  `json:"cash_purse"`
		BankCard int64  `json:"bank_card"`
		SetlID   string `json:"setl_id"`
	}
	if err := json.Unmarshal(out.Body, &r); err != nil {
		e.t.Fatalf("answer %s: %v", out.Body, err)
	}
	var b strings.Builder
	switch {
	case r.Status != "":
		b.WriteString(r.Status)
	case r.Kind != "":
		b.WriteString("reversed " + r.Kind)
	}
	if r.Reason != "" {
		b.WriteString(" " + r.Reason)
	}
	if r.Amount != 0 {
		fmt.Fprintf(&b, " amount=%d", r.Amount)
	}
	if r.Total != 0 {
		fmt.Fprintf(&b, " total=%d fund=%d medical=%d cash=%d bank=%d", r.Total, r.FundPay, r.Medical, r.Cash, r.BankCard)
		if r.SetlID != "" {
			b.WriteString(" setl=" + r.SetlID)
		}
	}
	if r.Captured != nil {
		fmt.Fprintf(&b, " captured=%d", *r.Captured)
	}
	if len(r.Legs) > 0 {
		var legs []string
		for _, l := range r.Legs {
			legs = append(legs, fmt.Sprintf("%s:%d", l.Purse, l.Amount))
		}
		b.WriteString(" legs=" + strings.Join(legs, ","))
	}
	if r.Balance != nil {
		fmt.Fprintf(&b, " balance=%d", *r.Balance)
	}
	if out.Replayed {
		b.WriteString(" (replayed)")
	}
	return b.String()
}

func (e *env) balance(name string) string {
	c, err := e.svc.Get(context.Background(), e.card(name))
	if err != nil {
		return "error " + fault.CodeOf(err)
	}
	var lines []string
	for _, p := range c.Purses {
		lines = append(lines, fmt.Sprintf("%s: posted=%d pending=%d available=%d", p.Purse, p.Posted, p.Pending, p.Available))
	}
	return fmt.Sprintf("%s %s balance=%d\n%s", name, c.Status, c.Balance, strings.Join(lines, "\n"))
}

func (e *env) card(name string) string {
	n, ok := e.cards[name]
	if !ok {
		e.t.Fatalf("no card %q in the script", name)
	}
	return n
}

// showSaga prints a saga's kind, state and the fields of its data that
// say how far it got.
func showSaga(s store.Saga) string {
	var d struct {
		Step       string `json:"step"`
		CityAmount int64  `json:"city_amount"`
		BankAmount int64  `json:"bank_amount"`
		Hold       int64  `json:"hold"`
		Reason     string `json:"reason"`
		// A medical bill's.
		SetlID   string  `json:"setl_id"`
		Holds    []int64 `json:"holds"`
		Medical  int64   `json:"medical_purse"`
		Cash     int64   `json:"cash_purse"`
		Bank     int64   `json:"bank_card"`
		Refunded bool    `json:"refunded"`
	}
	_ = json.Unmarshal(s.Data, &d)
	out := fmt.Sprintf("%s %s step=%s city=%d bank=%d held=%t", s.Kind, s.State, d.Step, d.CityAmount, d.BankAmount, d.Hold != 0)
	if s.Kind == payments.SagaMedical {
		out = fmt.Sprintf("%s %s step=%s setl=%q holds=%d medical=%d cash=%d bank=%d", s.Kind, s.State, d.Step, d.SetlID,
			len(d.Holds), d.Medical, d.Cash, d.Bank)
		if d.Refunded {
			out += " refunded"
		}
	}
	if d.Reason != "" {
		out += " reason=" + d.Reason
	}
	return out
}

// positional splits a command's arguments into positional ones and
// name=value options.
func positional(fields []string) ([]string, map[string]string) {
	var args []string
	opts := map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			opts[k] = v
		} else {
			args = append(args, f)
		}
	}
	return args, opts
}

func atoi(t *testing.T, s string) int64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// fakeBank is the bank acquirer plugin: it answers authorisations as the
// script sets, applies each key once, and keeps a journal of what it was
// asked, with the saga's state at the moment it was asked.
type fakeBank struct {
	mu      sync.Mutex
	mode    string
	st      store.Store
	answers map[string]json.RawMessage // by idempotency key
	log     []string
	shown   int // how much of log the script has seen
}

func (b *fakeBank) set(mode string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode = mode
}

func (b *fakeBank) journal() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown == len(b.log) {
		return "nothing new asked"
	}
	out := strings.Join(b.log[b.shown:], "\n")
	b.shown = len(b.log)
	return out
}

// Send implements payments.Plugins.
func (b *fakeBank) Send(ctx context.Context, to string, m sdk.Message) ([]sdk.Message, error) {
	if to != bankPlugin {
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Message: "no plugin " + to}
	}
	var in map[string]any
	if err := json.Unmarshal(m.Payload, &in); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if a, ok := b.answers[m.IdempotencyKey]; ok && m.IdempotencyKey != "" {
		b.log = append(b.log, fmt.Sprintf("%s %s again", m.Type, m.IdempotencyKey))
		return []sdk.Message{{Type: m.Type, Payload: a}}, nil
	}
	var answer any
	line := fmt.Sprintf("%s %s", m.Type, m.IdempotencyKey)
	switch m.Type {
	case payments.TypeBankAuthorize:
		card := in["token"]
		if card == nil {
			card = fmt.Sprintf("pan=%v", in["pan"])
		}
		line += fmt.Sprintf(" %v amount=%v", card, in["amount"])
		if in["transaction"] != nil {
			line += fmt.Sprintf(" %v", in["transaction"])
		}
		if s := b.sagaOf(ctx, m.IdempotencyKey); s != "" {
			line += " [saga " + s + "]"
		}
		switch mode := strings.Fields(b.mode); mode[0] {
		case "down":
			b.log = append(b.log, line+": no answer")
			return nil, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the switch does not answer"}
		case "decline":
			answer = map[string]string{"status": "declined", "response_code": mode[1]}
			line += ": declined " + mode[1]
		default:
			answer = map[string]string{"status": "approved", "auth_code": "A00001", "rrn": "000000000001"}
			line += ": approved"
			if mode[0] == "crash" {
				// The bank approves; the hub stops before it hears so.
				b.record(m.IdempotencyKey, answer)
				b.log = append(b.log, line+", answer lost")
				b.mode = "approve"
				panic(errCrash)
			}
		}
	case payments.TypeBankComplete:
		line += fmt.Sprintf(" authorization_key=%v amount=%v", in["authorization_key"], in["amount"])
		answer = map[string]string{"status": "approved", "auth_code": "A00002", "rrn": "000000000002"}
	case payments.TypeBankReverse, payments.TypeBankCancel:
		for _, k := range slices.Sorted(maps.Keys(in)) {
			line += fmt.Sprintf(" %s=%v", k, in[k])
		}
		answer = map[string]string{"status": "approved"}
		if m.Type == payments.TypeBankReverse {
			answer = map[string]string{"status": "reversed"}
		}
	default:
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Message: "the fake acquirer does not handle " + m.Type}
	}
	b.record(m.IdempotencyKey, answer)
	b.log = append(b.log, line)
	return []sdk.Message{{Type: m.Type, Payload: b.answers[m.IdempotencyKey]}}, nil
}

func (b *fakeBank) record(key string, answer any) {
	body, _ := json.Marshal(answer)
	b.answers[key] = body
}

// sagaOf shows the split payment's saga an authorisation key belongs to,
// as the hub left it before asking the bank.
func (b *fakeBank) sagaOf(ctx context.Context, authKey string) string {
	key, ok := strings.CutPrefix(authKey, "bank:"+plugin+":")
	if !ok {
		return ""
	}
	s, err := b.st.GetSaga(ctx, payments.OperatorPrefix+plugin, key)
	if err != nil {
		return ""
	}
	return showSaga(s)
}

// fakeInsurer is the hospital's plugin as the hub sees it: it settles
// bills with the insurer as the script sets, applies each key once, and
// keeps a journal of what it was asked.
type fakeInsurer struct {
	mu      sync.Mutex
	mode    []string
	st      store.Store
	answers map[string]json.RawMessage // by idempotency key
	log     []string
	shown   int
	setl    int
}

func (f *fakeInsurer) set(mode []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = mode
}

func (f *fakeInsurer) journal() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shown == len(f.log) {
		return "nothing new asked"
	}
	out := strings.Join(f.log[f.shown:], "\n")
	f.shown = len(f.log)
	return out
}

// Send answers medical.settle.v1 and medical.settle_reverse.v1.
func (f *fakeInsurer) Send(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	var in struct {
		BillKey string `json:"bill_key"`
		SetlID  string `json:"setl_id"`
		Total   int64  `json:"total"`
	}
	if err := json.Unmarshal(m.Payload, &in); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.answers[m.IdempotencyKey]; ok {
		f.log = append(f.log, fmt.Sprintf("%s %s again", m.Type, m.IdempotencyKey))
		return []sdk.Message{{Type: m.Type, Payload: a}}, nil
	}
	line := fmt.Sprintf("%s %s", m.Type, m.IdempotencyKey)
	var answer any
	switch m.Type {
	case payments.TypeMedicalSettle:
		line += fmt.Sprintf(" total=%d", in.Total)
		switch f.mode[0] {
		case "settle", "crash":
			if len(f.mode) != 4 {
				panic("insurer settle FUND ACCT CASH")
			}
			f.setl++
			id := fmt.Sprintf("S%03d", f.setl)
			fund, acct, cash := f.mode[1], f.mode[2], f.mode[3]
			answer = json.RawMessage(fmt.Sprintf(`{"status":"settled","setl_id":%q,"fund_pay":%s,"acct_pay":%s,"cash_pay":%s}`, id, fund, acct, cash))
			line += fmt.Sprintf(": settled %s fund=%s acct=%s cash=%s", id, fund, acct, cash)
			if f.mode[0] == "crash" {
				f.record(m.IdempotencyKey, answer)
				f.log = append(f.log, line+", answer lost")
				f.mode = []string{"refuse"}
				panic(errCrash)
			}
		default:
			answer = map[string]string{"status": "declined", "reason": "not_insured"}
			line += ": refused"
		}
	case payments.TypeMedicalSettleReverse:
		line += " setl=" + in.SetlID
		answer = map[string]string{"status": "reversed"}
	default:
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Message: "the fake insurer does not handle " + m.Type}
	}
	f.record(m.IdempotencyKey, answer)
	f.log = append(f.log, line)
	return []sdk.Message{{Type: m.Type, Payload: f.answers[m.IdempotencyKey]}}, nil
}

func (f *fakeInsurer) record(key string, answer any) {
	body, _ := json.Marshal(answer)
	f.answers[key] = body
}
