// Package api is the hub's REST/JSON interface under /v1, and the only
// package that speaks HTTP. It authenticates operators, checks their role,
// decodes requests strictly, enforces the Idempotency-Key contract and
// answers RFC 9457 problem details; the card service does the work.
//
// Idempotency: every write needs an Idempotency-Key. Ledger writes (cards,
// payments, holds, reversals) store their answer with the key in the same
// transaction as the ledger change, and a retry with the same key and body
// gets that answer back with "Idempotent-Replayed: true"; the same key with
// another body is refused with idempotency_conflict. Merchants and
// terminals are not ledger writes and the store keeps no key for them:
// their ids are natural keys, so a retried creation whose fields equal the
// existing row is answered as a replay (201 with the row), and one whose
// fields differ is refused as a duplicate (409).
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/transit"
)

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 1 << 20

// TokenCacheTTL is how long an authenticated token is trusted without
// asking the store again; a disabled operator keeps access at most this long.
const TokenCacheTTL = 5 * time.Second

// Options configure the API.
type Options struct {
	Store   store.Store
	Service *cards.Service
	Logger  *slog.Logger
	// Registry receives the metrics when Metrics is nil; nil means a fresh
	// registry of the handler's own.
	Registry prometheus.Registerer
	// Metrics, if set, is used as is (hub wiring shares it with the ledger
	// engine's Observe).
	Metrics *Metrics
	// Now is the clock for audit entries (default time.Now).
	Now func() time.Time
	// Plugins, if set, serves /v1/plugins and /v1/dead-letters.
	Plugins Plugins
	// Transit, if set, serves /v1/transit.
	Transit *transit.Service
	// Ready, if set, is asked by /readyz besides the store: the ledger
	// writer refuses writes after a failed commit until it has reloaded.
	Ready func() error
}

type server struct {
	st      store.Store
	svc     *cards.Service
	log     *slog.Logger
	metrics *Metrics
	tokens  *tokenCache
	now     func() time.Time
	mux     *http.ServeMux
	plugins Plugins
	transit *transit.Service
	ready   func() error
	// refusals counts refused requests into the audit log (auth.go).
	refusals *refusals
}

// New returns the hub's HTTP handler: /v1, /healthz, /readyz and /metrics.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(opts.Registry)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &server{
		st: opts.Store, svc: opts.Service, log: opts.Logger, metrics: opts.Metrics,
		tokens: newTokenCache(TokenCacheTTL, opts.Now), now: opts.Now, mux: http.NewServeMux(),
		plugins: opts.Plugins, transit: opts.Transit, ready: opts.Ready,
	}
	s.refusals = newRefusals(opts.Store, opts.Now, opts.Logger)
	s.routes()
	return s
}

func (s *server) routes() {
	// Cards.
	s.handle("POST /v1/cards", "cards.issue", s.issueCard)
	s.handle("GET /v1/cards/{number}", "cards.read", s.getCard)
	s.handle("POST /v1/cards/{number}/topups", "cards.topup", s.topUp)
	s.handle("POST /v1/cards/{number}/loss", "cards.loss", s.reportLoss)
	s.handle("POST /v1/cards/{number}/freeze", "cards.freeze", s.freeze)
	s.handle("POST /v1/cards/{number}/unfreeze", "cards.unfreeze", s.unfreeze)
	s.handle("POST /v1/cards/{number}/replace", "cards.replace", s.replace)
	s.handle("POST /v1/cards/{number}/cancel", "cards.cancel", s.cancel)
	s.handle("POST /v1/cards/{number}/pin", "cards.pin", s.setPIN)
	s.handle("POST /v1/cards/{number}/bank-card", "cards.bankcard", s.linkBankCard)
	s.handle("GET /v1/cards/{number}/bank-card", "cards.read", s.getBankCard)
	s.handle("POST /v1/cards/{number}/bank-card/unlink", "cards.bankcard", s.unlinkBankCard)
	// Payments, holds, transfers.
	s.handle("POST /v1/payments", "payments.create", s.pay)
	s.handle("POST /v1/holds", "holds.create", s.hold)
	s.handle("GET /v1/holds/{id}", "holds.read", s.getHold)
	s.handle("POST /v1/holds/{id}/capture", "holds.capture", s.capture)
	s.handle("POST /v1/holds/{id}/void", "holds.void", s.void)
	s.handle("POST /v1/transfers/{id}/reverse", "transfers.reverse", s.reverse)
	s.handle("GET /v1/transfers/{id}", "transfers.read", s.getTransfer)
	s.handle("GET /v1/ledger/trial-balance", "ledger.read", s.trialBalance)
	// Merchants, terminals, products, audit.
	s.handle("POST /v1/merchants", "merchants.create", s.addMerchant)
	s.handle("GET /v1/merchants", "merchants.read", s.listMerchants)
	s.handle("GET /v1/merchants/{id}", "merchants.read", s.getMerchant)
	s.handle("POST /v1/terminals", "terminals.create", s.addTerminal)
	s.handle("GET /v1/terminals", "terminals.read", s.listTerminals)
	s.handle("GET /v1/products", "products.read", s.listProducts)
	s.handle("GET /v1/audit", "audit.read", s.listAudit)
	// Plugins and the message router's dead letters.
	s.pluginRoutes()
	// Transit validators and the deny list.
	s.transitRoutes()
	// Operations: no token, so that probes and scrapers need no secret.
	s.plain("GET /healthz", s.healthz)
	s.plain("GET /readyz", s.readyz)
	s.plain("GET /metrics", s.metrics.Handler().ServeHTTP)
	s.plain("/", s.noRoute)
}

// ServeHTTP gives every request its correlation id, a logger carrying it,
// a metrics sample and a log line, and turns a panic into a 500 problem.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{id: requestID(r.Header.Get("X-Request-Id")), route: "unmatched"}
	info.log = s.log.With("request_id", info.id)
	w.Header().Set("X-Request-Id", info.id)
	rec := &recorder{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			info.log.Error("api: handler panicked", "panic", v, "method", r.Method, "path", r.URL.Path)
			if rec.status == 0 {
				s.problem(rec, r, fault.E(fault.Internal, "", "internal error"), 0)
			}
		}
		d := time.Since(start)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.request(info.route, status, d)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		info.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "route", info.route,
			"status", status, "duration_ms", float64(d.Microseconds())/1000, "operator", info.operator,
			"remote", remoteHost(r))
	}()
	s.mux.ServeHTTP(rec, r)
}

// plain registers a handler that needs no operator.
func (s *server) plain(pattern string, h http.HandlerFunc) {
	route := pattern
	if pattern == "/" {
		route = "unmatched"
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		infoOf(r).route = route
		h(w, r)
	})
}

// noRoute answers paths no route serves, and methods a path does not take.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.problem(w, r, fault.E(fault.InvalidRequest, "", r.Method+" is not allowed on "+r.URL.Path), http.StatusMethodNotAllowed)
		return
	}
	s.problem(w, r, fault.E(fault.NotFound, "", "no such resource: "+r.URL.Path), 0)
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz checks that the ledger writer serves and the store answers,
// within a short deadline.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			infoOf(r).log.Warn("api: ledger not ready", "err", err)
			s.problem(w, r, err, 0)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.st.Head(ctx); err != nil {
		infoOf(r).log.Warn("api: store not ready", "err", err)
		s.problem(w, r, fault.E(fault.Unavailable, "", "the store is not reachable"), 0)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": s.st.Driver()})
}
