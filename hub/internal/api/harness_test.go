package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/logtest"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/wiring"
)

// clock is the hub's time in these tests: the ledger writer and the card
// service share it, so a test can let a hold expire without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const adminToken = "admin-token-for-the-api-suite"

// harness is a hub serving on a real loopback listener over one store.
type harness struct {
	t      *testing.T
	st     store.Store
	app    *wiring.Hub
	base   string
	clk    *clock
	logs   *logtest.Buffer
	http   *http.Client
	tokens map[string]string // by role, and "admin"
	keys   atomic.Int64
}

func newHarness(t *testing.T, st store.Store) *harness {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	logs := &logtest.Buffer{}
	app, err := wiring.New(ctx, st, wiring.Config{
		AdminToken: adminToken,
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
		Ledger:     ledger.Config{Now: clk.Now},
		Cards:      cards.Options{Now: clk.Now},
		HoldSweep:  time.Hour, // the suite expires holds itself
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- app.Serve(serveCtx, ln) }()
	h := &harness{t: t, st: st, app: app, base: "http://" + ln.Addr().String(), clk: clk, logs: logs,
		http: &http.Client{Timeout: 30 * time.Second}, tokens: map[string]string{"admin": adminToken}}
	t.Cleanup(func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after shutdown: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		h.http.CloseIdleConnections()
	})
	for _, role := range []string{operators.Teller, operators.Risk, operators.Finance, operators.Auditor} {
		_, tok, err := operators.Add(ctx, st, role+"1", role)
		if err != nil {
			t.Fatal(err)
		}
		h.tokens[role] = tok
	}
	return h
}

// reply is an answer as the client saw it.
type reply struct {
	t      *testing.T
	req    string
	status int
	header http.Header
	raw    []byte
}

// req sends a request. body is marshalled unless it is a string or
// []byte; hdr adds headers ("Authorization": "" sends none).
func (h *harness) req(method, path, token string, body any, hdr map[string]string) *reply {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := h.http.Do(r)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return &reply{t: h.t, req: method + " " + path, status: resp.StatusCode, header: resp.Header, raw: raw}
}

func (h *harness) newKey() string { return fmt.Sprintf("key-%d", h.keys.Add(1)) }

// post is a write by role with a fresh idempotency key.
func (h *harness) post(role, path string, body any) *reply {
	h.t.Helper()
	return h.req("POST", path, h.tokens[role], body, map[string]string{"Idempotency-Key": h.newKey()})
}

func (h *harness) postKey(role, path, key string, body any) *reply {
	h.t.Helper()
	return h.req("POST", path, h.tokens[role], body, map[string]string{"Idempotency-Key": key})
}

func (h *harness) get(role, path string) *reply {
	h.t.Helper()
	return h.req("GET", path, h.tokens[role], nil, nil)
}

// want checks the status and returns the body as a JSON document.
func (r *reply) want(status int) doc {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("%s: status %d, want %d; body %s", r.req, r.status, status, r.raw)
	}
	if r.status != http.StatusNoContent {
		ct := r.header.Get("Content-Type")
		if r.status >= 400 && ct != "application/problem+json" || r.status < 400 && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "text/plain") {
			r.t.Fatalf("%s: Content-Type %q for status %d", r.req, ct, r.status)
		}
	}
	return r.doc()
}

func (r *reply) doc() doc {
	r.t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(r.raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		r.t.Fatalf("%s: answer is not JSON: %v: %s", r.req, err, r.raw)
	}
	return doc{t: r.t, v: v, where: r.req}
}

// problem checks that the answer is a problem with this status, code and
// field, and carries the request path and a request id.
func (r *reply) problem(status int, code, field string) doc {
	r.t.Helper()
	p := r.want(status)
	if got := p.str("code"); got != code {
		r.t.Fatalf("%s: problem code %q, want %q; body %s", r.req, got, code, r.raw)
	}
	if got := p.str("field"); got != field {
		r.t.Fatalf("%s: problem field %q, want %q; body %s", r.req, got, field, r.raw)
	}
	if p.int("status") != int64(status) || p.str("type") == "" || p.str("title") == "" || p.str("request_id") == "" ||
		p.str("iso8583") == "" {
		r.t.Fatalf("%s: incomplete problem document %s", r.req, r.raw)
	}
	if p.str("request_id") != r.header.Get("X-Request-Id") {
		r.t.Fatalf("%s: problem request_id %q but header %q", r.req, p.str("request_id"), r.header.Get("X-Request-Id"))
	}
	path, _, _ := strings.Cut(strings.TrimPrefix(r.req, strings.SplitN(r.req, " ", 2)[0]+" "), "?")
	if got := p.str("instance"); got != path {
		r.t.Fatalf("%s: problem instance %q, want %q", r.req, got, path)
	}
	return p
}

// doc navigates a decoded JSON answer by dotted paths ("purses.0.posted").
type doc struct {
	t     *testing.T
	v     any
	where string
}

func (d doc) lookup(path string) (any, bool) {
	v := d.v
	if path == "" {
		return v, true
	}
	for _, part := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			x, ok := c[part]
			if !ok {
				return nil, false
			}
			v = x
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func (d doc) get(path string) any {
	d.t.Helper()
	v, ok := d.lookup(path)
	if !ok {
		d.t.Fatalf("%s: no %q in the answer %s", d.where, path, d.json())
	}
	return v
}

func (d doc) has(path string) bool { _, ok := d.lookup(path); return ok }

func (d doc) str(path string) string {
	d.t.Helper()
	v, ok := d.lookup(path)
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.t.Fatalf("%s: %q is %T, want a string", d.where, path, v)
	}
	return s
}

func (d doc) int(path string) int64 {
	d.t.Helper()
	n, ok := d.get(path).(json.Number)
	if !ok {
		d.t.Fatalf("%s: %q is %T, want a number", d.where, path, d.get(path))
	}
	i, err := n.Int64()
	if err != nil {
		d.t.Fatalf("%s: %q = %s is not an integer", d.where, path, n)
	}
	return i
}

func (d doc) bool(path string) bool {
	d.t.Helper()
	b, ok := d.get(path).(bool)
	if !ok {
		d.t.Fatalf("%s: %q is %T, want a boolean", d.where, path, d.get(path))
	}
	return b
}

func (d doc) list(path string) []doc {
	d.t.Helper()
	l, ok := d.get(path).([]any)
	if !ok {
		d.t.Fatalf("%s: %q is %T, want an array", d.where, path, d.get(path))
	}
	out := make([]doc, len(l))
	for i, v := range l {
		out[i] = doc{t: d.t, v: v, where: d.where + " " + path + "." + strconv.Itoa(i)}
	}
	return out
}

// keys asserts that every name is present.
func (d doc) keys(names ...string) {
	d.t.Helper()
	for _, n := range names {
		if !d.has(n) {
			d.t.Fatalf("%s: the answer lacks %q: %s", d.where, n, d.json())
		}
	}
}

func (d doc) json() string {
	b, _ := json.Marshal(d.v)
	return string(b)
}

// purse finds a purse by name in a "purses" array.
func (d doc) purse(name string) doc {
	d.t.Helper()
	for _, p := range d.list("purses") {
		if p.str("purse") == name {
			return p
		}
	}
	d.t.Fatalf("%s: no purse %q in %s", d.where, name, d.json())
	return doc{}
}

// snapshot is what must not change when a request is refused: the row
// count of every table and the trial balance.
type snapshot struct {
	rows  map[string]int64
	trial []store.TrialLine
}

func (h *harness) snapshot() snapshot {
	h.t.Helper()
	rows, err := h.st.CountRows(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	tb, err := h.st.TrialBalance(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return snapshot{rows: rows, trial: tb}
}

// diff describes how after differs from s, ignoring the tables in allow
// (which may grow by at most one row each).
func (s snapshot) diff(after snapshot, allow ...string) string {
	var out []string
	for table, n := range after.rows {
		before := s.rows[table]
		grew := n - before
		if grew == 0 {
			continue
		}
		allowed := false
		for _, a := range allow {
			allowed = allowed || a == table
		}
		if !allowed || grew != 1 {
			out = append(out, fmt.Sprintf("%s: %d rows, was %d", table, n, before))
		}
	}
	if !equalTrial(s.trial, after.trial) {
		out = append(out, fmt.Sprintf("trial balance changed: %v -> %v", s.trial, after.trial))
	}
	return strings.Join(out, "; ")
}

func equalTrial(a, b []store.TrialLine) bool {
	if len(a) != len(b) {
		return false
	}
	am := map[string]store.TrialLine{}
	for _, l := range a {
		am[l.Code] = l
	}
	for _, l := range b {
		if am[l.Code] != l {
			return false
		}
	}
	return true
}

func (h *harness) verify() {
	h.t.Helper()
	rep, err := ledger.Verify(context.Background(), h.st)
	if err != nil {
		h.t.Fatal(err)
	}
	if !rep.OK() {
		h.t.Fatalf("ledger verify: %v", rep.Problems)
	}
}

// audit returns the whole audit log, read through the API as the auditor.
func (h *harness) audit() []doc {
	h.t.Helper()
	var all []doc
	after := int64(0)
	for {
		page := h.get(operators.Auditor, "/v1/audit?limit=1000&after="+strconv.FormatInt(after, 10)).want(200)
		entries := page.list("entries")
		all = append(all, entries...)
		if len(entries) == 0 {
			return all
		}
		after = page.int("next_after")
	}
}

// auditHas reports whether some entry matches every given field.
func auditHas(entries []doc, want map[string]string) bool {
	for _, e := range entries {
		ok := true
		for k, v := range want {
			if e.str(k) != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
