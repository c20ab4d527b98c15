package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/citycard/citycard/hub/internal/logtest"
)

// Environment variables naming the services the backend tests run against.
// Unset, those tests skip and say so; set but unreachable, they fail.
const (
	envPostgres = "CITYCARD_TEST_POSTGRES" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	envNATS     = "CITYCARD_TEST_NATS"     // e.g. nats://127.0.0.1:4222
)

// waitFor bounds every wait on a channel: generous, since it is only
// reached when something is broken.
const waitFor = 30 * time.Second

var allBackends = []string{BackendGoChannel, BackendPostgres, BackendNATS}

// forEachBackend runs fn as one parallel subtest per backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range allBackends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// uniq returns a fresh lowercase name, so tests on a shared server never
// see each other's topics, streams or schemas.
func uniq(prefix string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// testConfig returns a configuration for backend with short retries, set up
// on a fresh schema (PostgreSQL) or stream (NATS) removed when t ends.
func testConfig(t *testing.T, backend string) Config {
	t.Helper()
	cfg := Config{
		Backend:              backend,
		Logger:               slog.New(slog.NewJSONHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn})),
		RetryInitialInterval: 5 * time.Millisecond,
		PollInterval:         20 * time.Millisecond,
		CloseTimeout:         10 * time.Second,
	}
	switch backend {
	case BackendPostgres:
		cfg.PostgresPool = testPool(t)
	case BackendNATS:
		cfg.NATSURL, cfg.NATSStream = testNATS(t)
	}
	return cfg
}

// testPool returns a pool whose search_path is a new schema, dropped when t
// ends.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := os.Getenv(envPostgres)
	if url == "" {
		t.Skip(envPostgres + " not set: skipping PostgreSQL backend tests")
	}
	ctx := context.Background()
	schema := uniq("bus_test_")
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("%s is set but PostgreSQL is unreachable: %v", envPostgres, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	pcfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // registered after the drop, so it runs before it
	return pool
}

// testNATS returns the server URL and a new stream name; the stream is
// deleted when t ends.
func testNATS(t *testing.T) (url, stream string) {
	t.Helper()
	url = os.Getenv(envNATS)
	if url == "" {
		t.Skip(envNATS + " not set: skipping NATS JetStream backend tests")
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("%s is set but NATS is unreachable: %v", envNATS, err)
	}
	stream = strings.ToUpper(uniq("bustest_"))
	t.Cleanup(func() {
		defer nc.Close()
		js, err := nc.JetStream()
		if err == nil {
			err = js.DeleteStream(stream)
		}
		if err != nil {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
	return url, stream
}

// startRouter creates a router from cfg, lets setup register handlers,
// starts it and closes it when t ends.
func startRouter(t *testing.T, cfg Config, setup func(r *Router)) *Router {
	t.Helper()
	r, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	setup(r)
	if err := r.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func mustHandle(t *testing.T, r *Router, name, topic string, h HandlerFunc) {
	t.Helper()
	if err := r.Handle(name, topic, h); err != nil {
		t.Fatalf("Handle(%s, %s): %v", name, topic, err)
	}
}

// msg returns a message with the given payload and, unless empty, key.
func msg(payload, key string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(payload))
	if key != "" {
		m.Metadata.Set(MetaIdempotencyKey, key)
	}
	return m
}

func publish(t *testing.T, ctx context.Context, r *Router, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := r.Publish(ctx, topic, msgs...); err != nil {
		t.Fatalf("Publish to %s: %v", topic, err)
	}
}

// recv waits for one value from ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		panic("unreachable")
	}
}

// deadLetterWatch wraps a memory store to report each stored letter.
type deadLetterWatch struct {
	*MemoryDeadLetters
	put chan DeadLetter
}

func watchDeadLetters(cfg *Config) *deadLetterWatch {
	w := &deadLetterWatch{MemoryDeadLetters: NewMemoryDeadLetters(), put: make(chan DeadLetter, 100)}
	cfg.DeadLetters = w
	return w
}

func (w *deadLetterWatch) Put(ctx context.Context, l DeadLetter) error {
	if err := w.MemoryDeadLetters.Put(ctx, l); err != nil {
		return err
	}
	w.put <- l
	return nil
}

// counter counts calls by payload.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return c.n[key]
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// testWriter sends log output to t.Log, so a failing test shows it. Lines
// written after t ends are dropped, since t.Log would panic.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// logBuffer collects JSON log lines from concurrent writers.
type logBuffer struct{ logtest.Buffer }

// lines returns the decoded log lines whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
