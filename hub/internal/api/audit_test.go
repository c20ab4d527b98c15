package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/api"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/sdk"
)

// pluginHost is a plugin host that answers sends and replays itself: the
// API's part (the audit rows) is under test, not the plugins.
type pluginHost struct {
	mu       sync.Mutex
	sends    int
	replayed []int64
}

func (p *pluginHost) Status() []api.PluginView { return nil }

func (p *pluginHost) Send(_ context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	p.mu.Lock()
	p.sends++
	p.mu.Unlock()
	if m.Type == "refund" {
		return nil, &sdk.Error{Code: "invalid_request", Message: "no refunds here"}
	}
	return []sdk.Message{{ID: "r1", Type: m.Type + ".result", Payload: json.RawMessage(`{}`)}}, nil
}

func (p *pluginHost) DeadLetters(context.Context, int64, int) ([]api.DeadLetterView, error) {
	return nil, nil
}

func (p *pluginHost) Replay(_ context.Context, id int64) error {
	if id == 404 {
		return fault.E(fault.NotFound, "id", fmt.Sprintf("no dead letter %d", id))
	}
	p.mu.Lock()
	p.replayed = append(p.replayed, id)
	p.mu.Unlock()
	return nil
}

func (p *pluginHost) Tokenize(context.Context, string, string) (api.BankToken, error) {
	return api.BankToken{}, nil
}

func (p *pluginHost) ReconcileMedical(context.Context, string, string) (json.RawMessage, error) {
	return nil, nil
}

// apiOnly serves the API alone over st with a clock the test moves.
type apiOnly struct {
	t       *testing.T
	st      store.Store
	handler http.Handler
	srv     *httptest.Server
	clk     *clock
	tokens  map[string]string
	n       int
}

func newAPIOnly(t *testing.T, st store.Store, pl api.Plugins) *apiOnly {
	clk := &clock{t: time.Date(2026, 12, 7, 10, 0, 5, 0, time.UTC)}
	h := api.New(api.Options{Store: st, Logger: slog.New(slog.DiscardHandler), Now: clk.Now, Plugins: pl})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	a := &apiOnly{t: t, st: st, handler: h, srv: srv, clk: clk, tokens: map[string]string{}}
	for _, role := range []string{operators.Admin, operators.Finance} {
		_, tok, err := operators.Add(t.Context(), st, role+"1", role)
		if err != nil {
			t.Fatal(err)
		}
		a.tokens[role] = tok
	}
	return a
}

// post sends a write and returns its status.
func (a *apiOnly) post(token, path, body string) int {
	a.t.Helper()
	a.n++
	r, err := http.NewRequest("POST", a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", fmt.Sprint("k-", a.n))
	resp, err := a.srv.Client().Do(r)
	if err != nil {
		a.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (a *apiOnly) flush() {
	a.t.Helper()
	f, ok := a.handler.(interface{ FlushAudit(context.Context) error })
	if !ok {
		a.t.Fatal("the API handler has no FlushAudit")
	}
	if err := f.FlushAudit(context.Background()); err != nil {
		a.t.Fatal(err)
	}
}

// auditRows lists the audit log's rows of one action.
func auditRows(t *testing.T, st store.Store, action string) []store.AuditEntry {
	t.Helper()
	all, err := st.ListAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AuditEntry
	for _, e := range all {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func verifyAuditChain(t *testing.T, st store.Store) {
	t.Helper()
	r, err := ledger.VerifyAudit(t.Context(), st)
	if err != nil || !r.OK() {
		t.Fatalf("audit chain: %+v, %v", r.Problems, err)
	}
}

// Every message sent to a plugin through the API is audited with the plugin,
// the message type and the outcome, and so is every dead letter replay.
func TestAuditPluginSendsAndReplays(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		pl := &pluginHost{}
		a := newAPIOnly(t, st, pl)
		admin := a.tokens[operators.Admin]
		for range 3 {
			if st := a.post(admin, "/v1/plugins/pos/messages", `{"type":"purchase","payload":{"amount":100}}`); st != 200 {
				t.Fatalf("send: %d", st)
			}
		}
		if st := a.post(admin, "/v1/plugins/pos/messages", `{"type":"refund"}`); st != 400 {
			t.Fatalf("refused send: %d, want 400", st)
		}
		rows := auditRows(t, st, "plugins.send")
		if len(rows) != 4 || pl.sends != 4 {
			t.Fatalf("%d plugins.send rows for %d sends, want 4: %+v", len(rows), pl.sends, rows)
		}
		for i, e := range rows {
			want := "ok"
			if i == 3 {
				want = "error:invalid_request"
			}
			if e.Target != "pos purchase" && i < 3 || i == 3 && e.Target != "pos refund" {
				t.Errorf("row %d target %q", i, e.Target)
			}
			if e.Outcome != want || e.Operator != "admin1" || e.Role != operators.Admin ||
				!strings.Contains(e.Detail, "message_id=") || !strings.Contains(e.Detail, "request_id=") {
				t.Errorf("row %d: %+v, want outcome %s by admin1 with message and request ids", i, e, want)
			}
		}

		if st := a.post(admin, "/v1/dead-letters/7/replay", `{}`); st != 200 {
			t.Fatalf("replay: %d", st)
		}
		if st := a.post(admin, "/v1/dead-letters/404/replay", `{}`); st != 404 {
			t.Fatalf("replay of a missing letter: %d, want 404", st)
		}
		rows = auditRows(t, st, "deadletters.replay")
		if len(rows) != 2 || rows[0].Target != "7" || rows[0].Outcome != "ok" ||
			rows[1].Target != "404" || rows[1].Outcome != "error:not_found" {
			t.Fatalf("replay rows %+v, want 7 ok and 404 error:not_found", rows)
		}
		// The refused send and replay have their own rows: they are not
		// counted again among the refusals.
		a.flush()
		for _, action := range []string{"plugins.send", "deadletters.replay"} {
			for _, e := range auditRows(t, st, action) {
				if strings.HasPrefix(e.Outcome, "refused") {
					t.Errorf("refusal counted besides its own row: %+v", e)
				}
			}
		}
		verifyAuditChain(t, st)
	})
}

// A flood of refused writes writes a bounded number of rows that count it:
// 100 bad tokens in one minute give the first denial's row and one summary.
func TestAuditRefusalsCountedPerMinute(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		a := newAPIOnly(t, st, nil)
		for i := range 100 {
			if st := a.post("not-a-token-of-anyone", "/v1/payments", `{}`); st != 401 {
				t.Fatalf("refusal %d: %d, want 401", i, st)
			}
		}
		// A bad body from a known operator: counted apart, by operator.
		for range 30 {
			if st := a.post(a.tokens[operators.Finance], "/v1/merchants", `{"id":`); st != 400 {
				t.Fatalf("bad body: %d, want 400", st)
			}
		}
		pay := auditRows(t, st, "payments.create")
		if len(pay) != 1 || pay[0].Outcome != "denied" || pay[0].Operator != "" || pay[0].Remote != "127.0.0.1" {
			t.Fatalf("rows before the minute closed: %+v, want the first denial only", pay)
		}
		if n := len(auditRows(t, st, "merchants.create")); n != 0 {
			t.Fatalf("%d merchants.create rows before the minute closed, want 0", n)
		}

		// The next minute's first refusal writes the closed minute's summaries.
		a.clk.Advance(time.Minute)
		if st := a.post("not-a-token-of-anyone", "/v1/payments", `{}`); st != 401 {
			t.Fatalf("refusal: %d, want 401", st)
		}
		pay = auditRows(t, st, "payments.create")
		if len(pay) != 3 {
			t.Fatalf("%d payments.create rows after the minute closed, want first, summary, next first: %+v", len(pay), pay)
		}
		if s := pay[1]; s.Outcome != "denied" || !strings.Contains(s.Detail, "count=100 ") ||
			!strings.Contains(s.Detail, "statuses=401:100") || !strings.Contains(s.Detail, "minute=2026-12-07T10:00:00Z") {
			t.Errorf("summary row %+v, want 100 denials of 10:00", s)
		}
		m := auditRows(t, st, "merchants.create")
		if len(m) != 1 || m[0].Operator != "finance1" || m[0].Outcome != "refused" ||
			!strings.Contains(m[0].Detail, "count=30 ") || !strings.Contains(m[0].Detail, "statuses=400:30") {
			t.Fatalf("merchant refusals %+v, want one summary counting 30", m)
		}

		// Shutdown writes what is still counted; later refusals write a row each.
		a.post("not-a-token-of-anyone", "/v1/payments", `{}`)
		a.flush()
		pay = auditRows(t, st, "payments.create")
		if len(pay) != 4 || !strings.Contains(pay[3].Detail, "count=2 ") {
			t.Fatalf("rows after flush %+v, want a summary counting 2", pay)
		}
		a.post("not-a-token-of-anyone", "/v1/payments", `{}`)
		if n := len(auditRows(t, st, "payments.create")); n != 5 {
			t.Errorf("%d rows after a refusal past the flush, want 5", n)
		}
		verifyAuditChain(t, st)
	})
}

// Registering a validator is audited, and its key goes nowhere in the log.
func TestAuditDeviceRegistration(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		h.post("finance", "/v1/merchants", map[string]any{"id": "M-CITYBUS", "name": "City Bus", "mcc": "4131",
			"settlement_account": "1"}).want(201)
		dev := h.post("admin", "/v1/transit/devices", map[string]any{"id": "BUS-7", "operator": "city-bus",
			"mode": "bus", "route": "15"}).want(201)
		key := dev.str("key")
		if len(key) < 32 {
			t.Fatalf("device key %q", key)
		}
		h.post("admin", "/v1/transit/devices", map[string]any{"id": "BUS-7", "operator": "city-bus"}).want(409)
		rows := auditRows(t, st, "transit.devices.create")
		if len(rows) != 2 || rows[0].Target != "BUS-7" || rows[0].Outcome != "ok" || rows[0].Operator != "admin" ||
			!strings.Contains(rows[0].Detail, "operator=city-bus") || !strings.HasPrefix(rows[1].Outcome, "error:") {
			t.Fatalf("device rows %+v, want the registration and the refused duplicate", rows)
		}
		all, err := st.ListAudit(t.Context(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if b, _ := json.Marshal(e); bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(key))) {
				t.Fatalf("the device key is in audit row %d", e.ID)
			}
		}
		verifyAuditChain(t, st)
	})
}
