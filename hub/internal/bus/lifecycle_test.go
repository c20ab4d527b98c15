package bus

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

func quietConfig() Config {
	return Config{Logger: slog.New(slog.DiscardHandler)}
}

func TestNewRejectsBadConfig(t *testing.T) {
	// Port 1 has no server: connecting fails at once.
	unreachable, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer unreachable.Close()
	tests := []Config{
		{Backend: "kafka"},
		{Backend: BackendPostgres},
		{Backend: BackendPostgres, PostgresPool: unreachable},
		{Backend: BackendNATS},
		{Backend: BackendNATS, NATSURL: "nats://127.0.0.1:1"},
		{Backend: BackendNATS, NATSURL: "nats://127.0.0.1:1", NATSStream: "bad.stream"},
	}
	for _, cfg := range tests {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if r, err := New(t.Context(), cfg); err == nil {
			r.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.Backend != BackendGoChannel || c.HandlerTimeout != 5*time.Second || c.MaxRetries != 3 ||
		c.RetryInitialInterval != 50*time.Millisecond {
		t.Fatalf("defaults: %+v", c)
	}
	// Four attempts of 5s, waits of 50, 100 and 200ms, and 10s of slack.
	if got, want := c.deliveryBudget(), 30*time.Second+350*time.Millisecond; got != want {
		t.Fatalf("deliveryBudget = %s, want %s", got, want)
	}
	c = Config{MaxRetries: -1}
	c.setDefaults()
	if c.MaxRetries != 0 {
		t.Fatalf("MaxRetries -1 became %d, want no retries", c.MaxRetries)
	}
}

func TestRouterLifecycleErrors(t *testing.T) {
	ctx := t.Context()
	r, err := New(ctx, quietConfig())
	if err != nil {
		t.Fatal(err)
	}
	topic := Topic("transit", "tap")
	ok := func(context.Context, *message.Message) error { return nil }

	if err := r.Handle("Bad Name", topic, ok); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Handle with a bad name: %v", err)
	}
	if err := r.Handle("fares", "", ok); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Handle on an empty topic: %v", err)
	}
	if err := r.Handle("fares", TopicDeadLetters, ok); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Handle on the dead letters: %v", err)
	}
	if err := r.Handle(deadLettersHandler, topic, ok); err == nil {
		t.Error("Handle took the router's own handler name")
	}
	if err := r.Handle("fares", topic, ok); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle("fares", topic, ok); err == nil {
		t.Error("Handle took a name twice")
	}
	if err := r.Publish(ctx, topic, msg("x", "")); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Publish before Start: %v, want ErrNotStarted", err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	if err := r.Handle("late", topic, ok); !errors.Is(err, ErrStarted) {
		t.Errorf("Handle after Start: %v", err)
	}
	if err := r.Publish(ctx, Topic("transit", "other"), msg("x", "")); !errors.Is(err, ErrNoHandler) {
		t.Errorf("Publish to a topic without a handler: %v, want ErrNoHandler", err)
	}
	if err := r.Publish(ctx, "plugin.Transit.tap", msg("x", "")); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Publish to an invalid topic: %v", err)
	}
	if err := r.Publish(ctx, TopicDeadLetters, msg("x", "")); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Publish to the dead letters: %v", err)
	}
	if err := r.Publish(ctx, topic, msg("x", "")); err != nil {
		t.Errorf("Publish: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.Publish(ctx, topic, msg("x", "")); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := r.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWithoutStart(t *testing.T) {
	r, err := New(t.Context(), quietConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Handle("fares", Topic("transit", "tap"), func(context.Context, *message.Message) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseInterruptsHandler checks that Close cancels a handler still
// running after CloseTimeout, that its message is not dead-lettered for it,
// and that the publisher waiting on it hears ErrClosed.
func TestCloseInterruptsHandler(t *testing.T) {
	cfg := quietConfig()
	dead := watchDeadLetters(&cfg)
	cfg.HandlerTimeout = time.Minute
	// Close waits this long for the handler before cancelling it.
	cfg.CloseTimeout = 100 * time.Millisecond
	topic := Topic("transit", "tap")
	started := make(chan struct{})
	r := startRouter(t, cfg, func(r *Router) {
		mustHandle(t, r, "fares", topic, func(ctx context.Context, m *message.Message) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
	})
	published := make(chan error, 1)
	go func() { published <- r.Publish(context.Background(), topic, msg("x", "")) }()
	recv(t, started, "handler start")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, published, "Publish to return"); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish interrupted by Close: %v, want ErrClosed", err)
	}
	assertNoDeadLetters(t, dead)
}

// TestNoGoroutineLeak runs a router through publish, dead letter, replay
// and close, then checks it left no goroutine behind. Not parallel: the
// check sees the whole process.
func TestNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	cfg := quietConfig()
	cfg.RetryInitialInterval = time.Millisecond
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := Topic("transit", "tap")
	fail := true
	if err := r.Handle("fares", topic, func(ctx context.Context, m *message.Message) error {
		if string(m.Payload) == "bad" && fail {
			fail = false
			return Retryable(errors.New("busy"))
		}
		if string(m.Payload) == "panic" {
			panic("boom")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range []string{"ok", "bad", "panic"} {
		if err := r.Publish(ctx, topic, msg(p, p)); err != nil {
			t.Fatal(err)
		}
	}
	letters, err := r.DeadLetters().List(ctx, 0, 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %+v, %v", letters, err)
	}
	if err := r.Replay(ctx, letters[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
