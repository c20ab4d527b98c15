package bus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// The suite below runs on every backend: GoChannel always, PostgreSQL and
// NATS when their environment variables are set.

func TestCorrelationIDReachesHandlerAndLogs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		logs := &logBuffer{}
		// The services' logger and the router's share one handler, as in the hub.
		logger := slog.New(NewLogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		cfg.Logger = logger
		topic := Topic(uniq("p"), "ping")
		type seen struct{ ctxID, metaID string }
		got := make(chan seen, 2)
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "svc", topic, func(ctx context.Context, m *message.Message) error {
				logger.InfoContext(ctx, "handled ping", "payload", string(m.Payload))
				got <- seen{CorrelationID(ctx), m.Metadata.Get(MetaCorrelationID)}
				return nil
			})
		})

		// Carried from the publisher's context through the message.
		publish(t, WithCorrelationID(t.Context(), "req-42"), r, topic, msg("with-id", ""))
		s := recv(t, got, "first message")
		if s.ctxID != "req-42" || s.metaID != "req-42" {
			t.Fatalf("handler saw correlation ID %q (metadata %q), want req-42", s.ctxID, s.metaID)
		}

		// Generated when absent, the same in ctx and in metadata.
		publish(t, context.Background(), r, topic, msg("without-id", ""))
		s = recv(t, got, "second message")
		if s.ctxID == "" || s.ctxID != s.metaID {
			t.Fatalf("generated correlation ID: ctx %q, metadata %q", s.ctxID, s.metaID)
		}

		// The handler's line and the router's own carry it.
		byPayload := map[string]string{}
		for _, l := range logs.lines(t, "handled ping") {
			byPayload[l["payload"].(string)], _ = l[MetaCorrelationID].(string)
		}
		if byPayload["with-id"] != "req-42" || byPayload["without-id"] != s.ctxID {
			t.Fatalf("handler log lines carry correlation IDs %v, want with-id=req-42 without-id=%s", byPayload, s.ctxID)
		}
		waitLog(t, logs, "bus: message done", "req-42")
	})
}

// waitLog waits for the router's line msg with correlation ID id: the
// router logs it after the handler returns, so after the handler's signal.
func waitLog(t *testing.T, logs *logBuffer, msg, id string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		for _, l := range logs.lines(t, msg) {
			if l[MetaCorrelationID] == id {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no log line %q with correlation_id %s", msg, id)
}

func TestPanicBecomesDeadLetter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "tap")
		var calls counter
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "fares", topic, func(ctx context.Context, m *message.Message) error {
				calls.inc("all")
				panic("fare table missing")
			})
		})
		m := msg(`{"card":"1"}`, "tap-1")
		publish(t, WithCorrelationID(t.Context(), "corr-panic"), r, topic, m)

		l := recv(t, dead.put, "dead letter")
		if !strings.Contains(l.Reason, "handler panicked: fare table missing") {
			t.Errorf("reason %q does not name the panic", l.Reason)
		}
		if l.Topic != topic || l.Handler != "fares" || l.MessageUUID != m.UUID || string(l.Payload) != `{"card":"1"}` {
			t.Errorf("dead letter %+v does not describe the message", l)
		}
		if l.Metadata[MetaCorrelationID] != "corr-panic" || l.Metadata[MetaIdempotencyKey] != "tap-1" {
			t.Errorf("dead letter metadata %v lost the correlation ID or idempotency key", l.Metadata)
		}
		for k := range l.Metadata {
			if strings.HasSuffix(k, "_poisoned") {
				t.Errorf("poison queue key %q left in metadata", k)
			}
		}
		if n := calls.get("all"); n != 1 {
			t.Errorf("panicking handler ran %d times, want 1 (a panic is not retried)", n)
		}
		// The router survived: the next message is handled... and dead-lettered too.
		publish(t, t.Context(), r, topic, msg("again", ""))
		recv(t, dead.put, "second dead letter")
	})
}

func TestRetryableErrorRetriedThenSucceeds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		cfg.MaxRetries = 3
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "topup")
		done := make(chan int, 1)
		var calls counter
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "topups", topic, func(ctx context.Context, m *message.Message) error {
				n := calls.inc("all")
				if n != Attempt(ctx) {
					t.Errorf("call %d ran as attempt %d", n, Attempt(ctx))
				}
				if n < 3 {
					return Retryable(errors.New("bank host busy"))
				}
				done <- n
				return nil
			})
		})
		publish(t, t.Context(), r, topic, msg("x", ""))
		if n := recv(t, done, "success"); n != 3 {
			t.Fatalf("succeeded on attempt %d, want 3", n)
		}
		assertNoDeadLetters(t, dead)
	})
}

func TestRetryableErrorExhaustsRetries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		cfg.MaxRetries = 2
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "topup")
		var calls counter
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "topups", topic, func(ctx context.Context, m *message.Message) error {
				calls.inc("all")
				return Retryable(errors.New("bank host down"))
			})
		})
		publish(t, t.Context(), r, topic, msg("x", ""))
		l := recv(t, dead.put, "dead letter")
		if n := calls.get("all"); n != 3 {
			t.Errorf("handler ran %d times, want 1 + 2 retries", n)
		}
		if !strings.Contains(l.Reason, "gave up after 3 attempts") || !strings.Contains(l.Reason, "bank host down") {
			t.Errorf("reason %q", l.Reason)
		}
	})
}

func TestNonRetryableErrorGoesStraightToDeadLetters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		cfg.MaxRetries = 5
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "pay")
		var calls counter
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "payments", topic, func(ctx context.Context, m *message.Message) error {
				calls.inc("all")
				return errors.New("unknown merchant M9")
			})
		})
		publish(t, t.Context(), r, topic, msg("x", ""))
		l := recv(t, dead.put, "dead letter")
		if n := calls.get("all"); n != 1 {
			t.Errorf("handler ran %d times, want 1: a non-retryable error is not retried", n)
		}
		if l.Reason != "unknown merchant M9" {
			t.Errorf("reason %q, want the handler's error", l.Reason)
		}
	})
}

func TestDuplicateIdempotencyKeyRunsOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "tap")
		var ledger, notify counter
		sentinel := make(chan struct{}, 1)
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "ledger", topic, func(ctx context.Context, m *message.Message) error {
				key := m.Metadata.Get(MetaIdempotencyKey)
				// The first delivery of "flaky" fails: a failed key is not
				// remembered, so the resend runs.
				if ledger.inc(key) == 1 && key == "flaky" {
					return errors.New("rejected")
				}
				return nil
			})
			mustHandle(t, r, "notify", topic, func(ctx context.Context, m *message.Message) error {
				key := m.Metadata.Get(MetaIdempotencyKey)
				notify.inc(key)
				if key == "last" {
					sentinel <- struct{}{}
				}
				return nil
			})
		})
		publish(t, t.Context(), r, topic, msg("tap", "k1"), msg("tap", "k1"))
		publish(t, t.Context(), r, topic, msg("tap", "k1"))
		publish(t, t.Context(), r, topic, msg("tap", "flaky"))
		recv(t, dead.put, "dead letter of flaky")
		publish(t, t.Context(), r, topic, msg("tap", "flaky"), msg("end", "last"))
		// Each backend delivers a topic's messages to a handler in order, so
		// once "last" is through, every earlier one is too.
		recv(t, sentinel, "last message")
		if n := notify.get("k1"); n != 1 {
			t.Errorf("notify ran %d times for key k1, want 1", n)
		}
		if n := notify.get("flaky"); n != 1 {
			t.Errorf("notify ran %d times for key flaky, want 1", n)
		}
		waitCount(t, &ledger, "last", 1)
		if n := ledger.get("k1"); n != 1 {
			t.Errorf("ledger ran %d times for key k1, want 1 (keys are per handler, notify's run does not count)", n)
		}
		if n := ledger.get("flaky"); n != 2 {
			t.Errorf("ledger ran %d times for key flaky, want 2: a failed key must be released", n)
		}
	})
}

// waitCount waits until c counts n for key; used where two handlers of one
// topic run independently.
func waitCount(t *testing.T, c *counter, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for c.get(key) < n {
		if time.Now().After(deadline) {
			t.Fatalf("count of %s stayed %d, want %d", key, c.get(key), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTimeoutIsRetriedThenDeadLettered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		cfg.HandlerTimeout = 100 * time.Millisecond
		cfg.MaxRetries = 2
		dead := watchDeadLetters(&cfg)
		slowOnce, alwaysSlow := Topic(uniq("p"), "slow-once"), Topic(uniq("p"), "always-slow")
		var calls counter
		done := make(chan int, 1)
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "slow-once", slowOnce, func(ctx context.Context, m *message.Message) error {
				if n := calls.inc("once"); n == 1 {
					<-ctx.Done() // the partner does not answer in time
					return ctx.Err()
				}
				done <- Attempt(ctx)
				return nil
			})
			mustHandle(t, r, "always-slow", alwaysSlow, func(ctx context.Context, m *message.Message) error {
				calls.inc("always")
				<-ctx.Done()
				return ctx.Err()
			})
		})
		publish(t, t.Context(), r, slowOnce, msg("x", ""))
		if a := recv(t, done, "second attempt"); a != 2 {
			t.Errorf("succeeded on attempt %d, want 2", a)
		}
		publish(t, t.Context(), r, alwaysSlow, msg("y", ""))
		l := recv(t, dead.put, "dead letter")
		if l.Handler != "always-slow" || !strings.Contains(l.Reason, ErrHandlerTimeout.Error()) {
			t.Errorf("dead letter %s: %q, want a timeout of always-slow", l.Handler, l.Reason)
		}
		if n := calls.get("always"); n != 3 {
			t.Errorf("always-slow ran %d times, want 3", n)
		}
	})
}

func TestReplayRunsHandlerAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		cfg := testConfig(t, backend)
		dead := watchDeadLetters(&cfg)
		topic := Topic(uniq("p"), "bill")
		var ledger, audit counter
		type run struct {
			key, corr, replayOf string
		}
		ran := make(chan run, 2)
		fixed := make(chan struct{})
		auditDone := make(chan struct{}, 1)
		r := startRouter(t, cfg, func(r *Router) {
			mustHandle(t, r, "ledger", topic, func(ctx context.Context, m *message.Message) error {
				ledger.inc("all")
				select {
				case <-fixed:
				default:
					return errors.New("account frozen")
				}
				ran <- run{m.Metadata.Get(MetaIdempotencyKey), CorrelationID(ctx), m.Metadata.Get(MetaReplayOf)}
				return nil
			})
			mustHandle(t, r, "audit", topic, func(ctx context.Context, m *message.Message) error {
				audit.inc("all")
				auditDone <- struct{}{}
				return nil
			})
		})
		publish(t, WithCorrelationID(t.Context(), "corr-bill"), r, topic, msg("bill", "bill-7"))
		l := recv(t, dead.put, "dead letter")
		recv(t, auditDone, "audit of the original")
		stored, err := r.DeadLetters().List(t.Context(), 0, 10)
		if err != nil || len(stored) != 1 {
			t.Fatalf("List: %v, %v", stored, err)
		}
		id := stored[0].ID
		if l.Handler != "ledger" || stored[0].ReplayedAt != nil {
			t.Fatalf("dead letter %+v", stored[0])
		}

		close(fixed) // the operator unfroze the account
		if err := r.Replay(t.Context(), id); err != nil {
			t.Fatalf("Replay: %v", err)
		}
		got := recv(t, ran, "replayed message")
		if got.key != "bill-7" || got.corr != "corr-bill" || got.replayOf == "" {
			t.Errorf("replay ran with key %q, correlation %q, replay_of %q", got.key, got.corr, got.replayOf)
		}
		after, err := r.DeadLetters().Get(t.Context(), id)
		if err != nil || after.ReplayedAt == nil {
			t.Fatalf("after replay: %+v, %v; want it marked replayed", after, err)
		}
		if err := r.Replay(t.Context(), id); !errors.Is(err, ErrAlreadyReplayed) {
			t.Errorf("second Replay: %v, want ErrAlreadyReplayed", err)
		}
		if err := r.Replay(t.Context(), id+100); !errors.Is(err, ErrDeadLetterNotFound) {
			t.Errorf("Replay of unknown letter: %v, want ErrDeadLetterNotFound", err)
		}
		// The replay was for the ledger only: audit handled the original and
		// must not see it again. A message after it proves audit is past it.
		publish(t, t.Context(), r, topic, msg("next", ""))
		recv(t, auditDone, "audit of the next message")
		if n := audit.get("all"); n != 2 {
			t.Errorf("audit ran %d times, want 2 (original and next, not the replay)", n)
		}
		recv(t, ran, "ledger on the next message")
		if n := ledger.get("all"); n != 3 {
			t.Errorf("ledger ran %d times, want 3 (original, replay, next)", n)
		}
		assertNoDeadLetters(t, dead)
	})
}

// assertNoDeadLetters checks nothing was dead-lettered beyond what the test
// already received.
func assertNoDeadLetters(t *testing.T, dead *deadLetterWatch) {
	t.Helper()
	select {
	case l := <-dead.put:
		t.Errorf("unexpected dead letter: %s by %s: %s", l.Topic, l.Handler, l.Reason)
	default:
	}
}
