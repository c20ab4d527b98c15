//go:build unix

package main

import (
	"errors"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// Stream shape: workers × perWorker payments of payAmount must fit in
// topUp, and topUp must fit the standard product's 5,000.00 maximum.
// payAmount stays under the retail PIN threshold so no PIN is needed.
const (
	adminToken    = "process-test-admin-token-0123456789"
	topUp         = 400000
	payAmount     = 100
	workers       = 8
	perWorker     = 400
	signalAfter   = 400 // approved payments before the signal is sent
	streamTimeout = 2 * time.Minute
)

// TestStopUnderLoad stops `citycard serve` during a stream of payments,
// by SIGKILL (a crash) and by SIGTERM (a graceful stop), restarts it on
// the same store and checks that the ledger verifies and that every
// payment answered "approved" is there.
func TestStopUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	bin := buildCitycard(t)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("SIGKILL", func(t *testing.T) { testStopUnderLoad(t, bin, b.dsn(t), syscall.SIGKILL) })
			t.Run("SIGTERM", func(t *testing.T) { testStopUnderLoad(t, bin, b.dsn(t), syscall.SIGTERM) })
		})
	}
}

// stream is what a payment stream saw.
type stream struct {
	mu       sync.Mutex
	approved []string // ids of payments answered "approved"
	declined []string // reasons of payments answered "declined"
	// uncertain counts requests that got no answer once the signal was
	// sent: each may or may not be in the ledger. Each worker has at most
	// one.
	uncertain int
	stopping  atomic.Bool // set just before the signal: errors are expected from then on
	active    atomic.Int32
}

func (s *stream) approvedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.approved)
}

func testStopUnderLoad(t *testing.T, bin, dsn string, sig syscall.Signal) {
	srv := startServer(t, bin, dsn, adminToken)
	c := newClient(srv.url, adminToken)

	c.must(t, "POST", "/v1/merchants", 201, map[string]any{
		"id": "M-STOP", "name": "Stop test shop", "mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222020000000001",
	}, nil)
	var card struct{ Number string }
	c.must(t, "POST", "/v1/cards", 201, map[string]any{
		"holder":  map[string]any{"name": "Li Lei", "id_type": "resident_id", "id_number": "110101199003071234", "phone": "13800000000"},
		"product": "standard",
	}, &card)
	c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{
		"amount": topUp, "currency": "CNY", "purse": "cash", "method": "cash",
	}, nil)
	if got := cashPosted(t, c, card.Number); got != topUp {
		t.Fatalf("cash purse after the top-up holds %d, want %d", got, topUp)
	}

	st := &stream{}
	var wg sync.WaitGroup
	for range workers {
		st.active.Add(1)
		wg.Go(func() {
			defer st.active.Add(-1)
			payLoop(t, c, card.Number, st)
		})
	}
	// abandon ends the stream without the test's signal, so that no worker
	// outlives the test.
	abandon := func() {
		st.stopping.Store(true)
		srv.cmd.Process.Kill()
		wg.Wait()
	}

	deadline := time.Now().Add(streamTimeout)
	for st.approvedCount() < signalAfter {
		if st.active.Load() == 0 {
			t.Fatalf("the payment stream ended after %d approvals, before the signal", st.approvedCount())
		}
		if time.Now().After(deadline) {
			abandon()
			t.Fatalf("only %d payments approved within %v", st.approvedCount(), streamTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	st.stopping.Store(true)
	if st.active.Load() == 0 {
		t.Fatal("the payment stream ended before the signal")
	}
	err := srv.stop(sig)
	wg.Wait()
	t.Logf("signal %d (%v) after %d approvals: %d approved, %d declined, %d unanswered in flight",
		sig, sig, signalAfter, len(st.approved), len(st.declined), st.uncertain)

	switch sig {
	case syscall.SIGKILL:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("citycard serve: %v, want killed by SIGKILL", err)
		}
	default:
		if err != nil {
			t.Fatalf("citycard serve after %v: %v, want exit status 0", sig, err)
		}
	}
	if len(st.declined) > 0 {
		t.Errorf("%d payments declined, want none; first reason: %s", len(st.declined), st.declined[0])
	}

	// The store as the stopped process left it must verify.
	if out, code := runCitycard(t, bin, "ledger", "verify", "--db", dsn); code != 0 {
		t.Fatalf("citycard ledger verify after %v: exit %d\n%s", sig, code, out)
	}

	srv = startServer(t, bin, dsn, adminToken)
	c = newClient(srv.url, adminToken)
	for _, id := range st.approved {
		var tr struct {
			Kind   string
			Card   string
			Amount int64
		}
		code, err := c.do("GET", "/v1/transfers/"+id, nil, &tr)
		if code != 200 {
			t.Errorf("payment %s was approved but GET /v1/transfers/%s answers %d: %v", id, id, code, err)
			continue
		}
		if tr.Kind != "payment" || tr.Card != card.Number || tr.Amount != payAmount {
			t.Errorf("transfer %s is %+v, want a payment of %d from card %s", id, tr, payAmount, card.Number)
		}
	}

	// Every approved payment is in the balance; of the unanswered ones,
	// any number may be.
	spent := topUp - cashPosted(t, c, card.Number)
	approved := int64(len(st.approved))
	t.Logf("after restart: %d payments of %d in the ledger, %d of them answered approved", spent/payAmount, payAmount, approved)
	if spent%payAmount != 0 || spent/payAmount < approved || spent/payAmount > approved+int64(st.uncertain) {
		t.Errorf("the card spent %d after restart: want %d approved payments of %d plus at most %d unanswered ones",
			spent, approved, payAmount, st.uncertain)
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Errorf("citycard serve after SIGTERM: %v, want exit status 0", err)
	}
	if out, code := runCitycard(t, bin, "ledger", "verify", "--db", dsn); code != 0 {
		t.Fatalf("citycard ledger verify after restart: exit %d\n%s", code, out)
	}
}

// payLoop pays until perWorker payments are done or the server stops
// answering.
func payLoop(t *testing.T, c *client, card string, st *stream) {
	for range perWorker {
		var res struct {
			ID     string
			Status string
			Reason string
		}
		code, err := c.do("POST", "/v1/payments", map[string]any{
			"card": card, "channel": "retail", "merchant": "M-STOP", "amount": payAmount, "currency": "CNY",
		}, &res)
		switch {
		case err == nil && code == 201 && res.Status == "approved":
			st.mu.Lock()
			st.approved = append(st.approved, res.ID)
			st.mu.Unlock()
			continue
		case err == nil && code == 201:
			st.mu.Lock()
			st.declined = append(st.declined, res.Reason)
			st.mu.Unlock()
			continue
		case !st.stopping.Load():
			t.Errorf("payment before the signal: status %d: %v", code, err)
		default:
			// The request may have been committed before the server
			// stopped. Even a refused connection does not prove the
			// contrary: net/http resends a request that carries an
			// Idempotency-Key when its first connection breaks.
			st.mu.Lock()
			st.uncertain++
			st.mu.Unlock()
		}
		return
	}
}

// cashPosted is the posted balance of a card's cash purse.
func cashPosted(t *testing.T, c *client, card string) int64 {
	t.Helper()
	var v struct {
		Purses []struct {
			Purse  string
			Posted int64
		}
	}
	c.must(t, "GET", "/v1/cards/"+card, 200, nil, &v)
	for _, p := range v.Purses {
		if p.Purse == "cash" {
			return p.Posted
		}
	}
	t.Fatalf("card %s has no cash purse: %+v", card, v)
	return 0
}

// backend is a store the process tests run against.
type backend struct {
	name string
	dsn  func(t *testing.T) string // a fresh, empty store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) string { return "sqlite://" + t.TempDir() + "/citycard.db" }},
		{"postgres", func(t *testing.T) string {
			base := os.Getenv(storetest.PostgresEnv)
			if base == "" {
				t.Skip(storetest.PostgresEnv + " is not set: skipping PostgreSQL; set it to a PostgreSQL URL to run against PostgreSQL")
			}
			return freshPostgresSchema(t, base)
		}},
	}
}

// freshPostgresSchema makes an empty, migrated schema in the database at
// base, dropped when t ends, and returns a DSN whose connections use it.
func freshPostgresSchema(t *testing.T, base string) string {
	t.Helper()
	st, drop, err := postgres.OpenTestSchema(t.Context(), base)
	if err != nil {
		t.Fatalf("PostgreSQL test schema (CITYCARD_TEST_POSTGRES is set): %v", err)
	}
	t.Cleanup(drop)
	schema := st.Schema()
	st.Close() // the processes under test open their own
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("CITYCARD_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
