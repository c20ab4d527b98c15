package wiring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/drivers"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
)

const token = "hub-test-admin-token"

var quiet = slog.New(slog.NewJSONHandler(io.Discard, nil))

// client talks to a hub as the admin.
type client struct {
	t    testing.TB
	base string
	n    int
	mu   sync.Mutex
}

func (c *client) do(method, path string, body any) (int, map[string]any, error) {
	return c.doKey(method, path, "", body)
}

// doKey is do with the given Idempotency-Key ("" makes a fresh one).
func (c *client) doKey(method, path, key string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if method == "POST" {
		if key == "" {
			c.mu.Lock()
			c.n++
			key = fmt.Sprintf("k%d", c.n)
			c.mu.Unlock()
		}
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: undecodable answer: %w", method, path, err)
	}
	return resp.StatusCode, m, nil
}

func (c *client) must(method, path string, body any, want int) map[string]any {
	c.t.Helper()
	st, m, err := c.do(method, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if st != want {
		c.t.Fatalf("%s %s: %d %v, want %d", method, path, st, m, want)
	}
	return m
}

func serve(t testing.TB, app *wiring.Hub) (*client, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, ln) }()
	return &client{t: t, base: "http://" + ln.Addr().String()}, cancel, done
}

// TestServeShutdownKeepsAcknowledgedWrites opens a hub by DSN, pays from a
// card from many goroutines, and shuts it down while they are in flight:
// Serve returns cleanly, and after reopening the store every payment that
// was answered is in the ledger, which verifies.
func TestServeShutdownKeepsAcknowledgedWrites(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "data", "citycard.db")
	app, err := wiring.Open(context.Background(), wiring.Config{DB: dsn, AdminToken: token, Logger: quiet,
		// Stores keep microseconds: a writer clock at that precision
		// makes the hash chain cover exactly what is stored.
		Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }}})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	c.must("POST", "/v1/merchants", map[string]any{"id": "M1", "name": "Shop", "mcc": "5411", "settlement_account": "1"}, 201)
	card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
	c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 400000, "currency": "CNY"}, 201)

	var (
		mu       sync.Mutex
		approved []string
		wg       sync.WaitGroup
	)
	started := make(chan struct{})
	var once sync.Once
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 200; i++ {
				st, m, err := c.do("POST", "/v1/payments", map[string]any{"card": card, "channel": "transit", "merchant": "M1", "amount": 100, "currency": "CNY"})
				if err != nil || st != 201 {
					return // the server has stopped taking requests
				}
				once.Do(func() { close(started) })
				if m["status"] == "approved" {
					mu.Lock()
					approved = append(approved, m["id"].(string))
					mu.Unlock()
				}
			}
		})
	}
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("no payment was answered")
	}
	time.Sleep(20 * time.Millisecond)
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Serve did not return")
	}
	wg.Wait()
	if err := app.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if len(approved) == 0 {
		t.Fatal("no payment was approved before the shutdown")
	}

	st, err := drivers.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range approved {
		var n int64
		fmt.Sscan(id, &n)
		tr, err := st.GetTransfer(context.Background(), n)
		if err != nil || tr.Kind != store.TransferPayment || tr.Card != card {
			t.Fatalf("approved payment %s: %+v, %v", id, tr, err)
		}
	}
	rep, err := ledger.Verify(context.Background(), st)
	if err != nil || !rep.OK() {
		t.Fatalf("verify after shutdown: %v %v", err, rep.Problems)
	}
}

// TestHoldSweeper lets Serve's sweeper expire a hold.
func TestHoldSweeper(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		var mu sync.Mutex
		now := time.Now().UTC()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
			Ledger: ledger.Config{Now: clock}, Cards: cards.Options{Now: clock}, HoldSweep: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c, stop, done := serve(t, app)
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
		c.must("POST", "/v1/merchants", map[string]any{"id": "M1", "name": "Shop", "mcc": "5411", "settlement_account": "1"}, 201)
		card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
		c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 1000, "currency": "CNY"}, 201)
		id := c.must("POST", "/v1/holds", map[string]any{"card": card, "channel": "retail", "merchant": "M1", "amount": 600, "currency": "CNY", "expires_in": 5}, 201)["id"].(string)
		if got := c.must("GET", "/v1/holds/"+id, nil, 200)["status"]; got != "pending" {
			t.Fatalf("new hold is %v", got)
		}
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for c.must("GET", "/v1/holds/"+id, nil, 200)["status"] != "expired" {
			if time.Now().After(deadline) {
				t.Fatal("the sweeper did not expire the hold")
			}
			time.Sleep(10 * time.Millisecond)
		}
		purses := c.must("GET", "/v1/cards/"+card, nil, 200)["purses"].([]any)
		if cash := purses[0].(map[string]any); cash["available"].(float64) != 1000 || cash["pending"].(float64) != 0 {
			t.Fatalf("cash purse after expiry %v", cash)
		}
	})
}

// TestObserveChained checks that a caller's ledger Observe still runs
// beside the metrics, and that /metrics counts the batches.
func TestObserveChained(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	app, err := wiring.Open(context.Background(), wiring.Config{
		DB: "sqlite://" + filepath.Join(t.TempDir(), "c.db"), AdminToken: token, Logger: quiet,
		Ledger: ledger.Config{Observe: func(int, time.Duration, error) { mu.Lock(); calls++; mu.Unlock() }},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c, stop, done := serve(t, app)
	c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 {
		t.Fatal("the configured Observe was not called")
	}
	if !strings.Contains(string(body), "citycard_ledger_batch_size_count 1") {
		t.Fatalf("metrics do not count the batch:\n%s", body)
	}
}

func TestOpenRefuses(t *testing.T) {
	if _, err := wiring.Open(context.Background(), wiring.Config{DB: "mysql://nowhere", Logger: quiet}); err == nil {
		t.Fatal("Open took an unknown driver")
	}
	// A too short admin token is refused, and the store is not left open
	// (a second Open of the same file works).
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "x.db")
	if _, err := wiring.Open(context.Background(), wiring.Config{DB: dsn, AdminToken: "short", Logger: quiet}); err == nil {
		t.Fatal("Open took a short admin token")
	}
	app, err := wiring.Open(context.Background(), wiring.Config{DB: dsn, AdminToken: token, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if app.Store().Driver() != "sqlite" || app.Service() == nil || app.Handler() == nil {
		t.Fatal("incomplete Hub")
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
}
