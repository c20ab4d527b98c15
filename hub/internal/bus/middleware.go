package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// HandlerFunc handles one message for a hub service. ctx, not
// msg.Context(), carries the correlation ID (CorrelationID), the attempt
// number (Attempt) and the attempt's deadline: a handler must return once
// ctx is done, because the bus
// never starts a second attempt beside a first that is still running, which
// could apply the message twice.
//
// Return nil when done, Retryable(err) for a transient failure, and any other
// error for one that another attempt would not fix; both end in the dead
// letters if they persist.
type HandlerFunc func(ctx context.Context, msg *message.Message) error

// Metadata the poison queue adds to a dead letter on TopicDeadLetters. The
// first three keys are the ones watermill's own PoisonQueue uses.
const (
	metaDeadReason  = "reason_poisoned"
	metaDeadTopic   = "topic_poisoned"
	metaDeadHandler = "handler_poisoned"
	metaDeadUUID    = "uuid_poisoned"
	metaDeadAt      = "poisoned_at"
)

// Metadata of a replayed dead letter.
const (
	// MetaReplayOf holds the ID of the dead letter a message replays.
	MetaReplayOf = "replay_of"
	// metaReplayHandler limits a replay to the handler that failed on it;
	// the topic's other handlers already handled the original.
	metaReplayHandler = "replay_handler"
)

// maxReasonLen bounds the reason kept in metadata: NATS carries metadata in
// headers, and an error chain can be long.
const maxReasonLen = 2000

// step is one layer of the handler stack: the message plus the context the
// layers above built for it.
type step func(ctx context.Context, msg *message.Message) error

// stack wraps h in the router's middleware, outermost first:
//
//	correlation ID → replay filter → poison queue → de-duplication → retry → timeout → recovery → h
//
// The order is what makes each layer see what it needs. Correlation is
// outermost so every log line below carries the ID. The poison queue sits
// outside de-duplication so a failed message's key is released before it is
// dead-lettered (a replay then runs), and outside retry so it sees only the
// final error. De-duplication sits outside retry so a retry is not mistaken
// for a duplicate. The timeout is per attempt, inside retry, and recovery is
// innermost so a panic becomes an ordinary, non-retryable error of that
// attempt.
func (r *Router) stack(name, topic string, h HandlerFunc) message.NoPublishHandlerFunc {
	s := recoverer(h)
	s = r.timeout(s)
	s = r.retry(name, s)
	s = r.dedup(name, s)
	s = r.poison(name, topic, s)
	s = replayFilter(name, s)
	return r.correlation(name, topic, s)
}

// correlation takes the message's correlation ID, or makes one for a
// message that came without, and puts it in ctx for the layers below.
func (r *Router) correlation(name, topic string, next step) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		id := msg.Metadata.Get(MetaCorrelationID)
		if id == "" {
			id = newCorrelationID()
			msg.Metadata.Set(MetaCorrelationID, id)
		}
		// The backends' contexts outlive Close (see drainSubscriber), so
		// the router's own halt is what cancels a handler at shutdown.
		ctx, cancel := context.WithCancel(WithCorrelationID(msg.Context(), id))
		defer cancel()
		defer context.AfterFunc(r.halt, cancel)()
		start := time.Now()
		err := next(ctx, msg)
		attrs := []any{"handler", name, "topic", topic, "message_uuid", msg.UUID, "duration", time.Since(start)}
		if err != nil {
			attrs = append(attrs, "error", err)
		} else {
			// Acknowledged: this handler is done with it. (A failure is
			// delivered again, and counted when that ends.)
			r.delivered(msg)
		}
		r.log.DebugContext(ctx, "bus: message done", attrs...)
		return err
	}
}

// replayFilter acknowledges, without running, a replay meant for another
// handler of the same topic.
func replayFilter(name string, next step) step {
	return func(ctx context.Context, msg *message.Message) error {
		if h := msg.Metadata.Get(metaReplayHandler); h != "" && h != name {
			return nil
		}
		return next(ctx, msg)
	}
}

// poison publishes a message whose handler failed for good to
// TopicDeadLetters and acknowledges it, so one bad message does not block
// the messages behind it.
func (r *Router) poison(name, topic string, next step) step {
	return func(ctx context.Context, msg *message.Message) error {
		err := next(ctx, msg)
		if err == nil {
			return nil
		}
		var se *storeError
		if ctx.Err() != nil || errors.As(err, &se) {
			// Shutting down, past the backend's ack deadline, or the
			// idempotency store is down: the handler never had a fair try,
			// so leave the message to be delivered again.
			r.log.WarnContext(ctx, "bus: message left for redelivery", "handler", name, "topic", topic,
				"message_uuid", msg.UUID, "error", err)
			return err
		}
		dead := deadLetterMessage(msg, name, topic, err)
		if perr := r.publishDeadLetter(msg, dead); perr != nil {
			r.log.ErrorContext(ctx, "bus: cannot dead-letter message; leaving it for redelivery", "handler", name,
				"topic", topic, "message_uuid", msg.UUID, "error", err, "publish_error", perr)
			return errors.Join(err, perr)
		}
		attrs := []any{"handler", name, "topic", topic, "message_uuid", msg.UUID, "reason", err.Error()}
		if p := (*PanicError)(nil); errors.As(err, &p) {
			attrs = append(attrs, "stack", string(p.Stack))
		}
		r.log.ErrorContext(ctx, "bus: message dead-lettered", attrs...)
		return nil
	}
}

// deadLetterMessage builds the message put on TopicDeadLetters. It gets a
// UUID of its own: JetStream drops a second message with the same ID in one
// stream as a duplicate.
func deadLetterMessage(msg *message.Message, handler, topic string, err error) *message.Message {
	dead := message.NewMessage(watermill.NewUUID(), msg.Payload)
	dead.Metadata = maps.Clone(msg.Metadata)
	if dead.Metadata == nil {
		dead.Metadata = message.Metadata{}
	}
	reason := strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " | ").Replace(err.Error())
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "") + "..."
	}
	dead.Metadata.Set(metaDeadReason, reason)
	dead.Metadata.Set(metaDeadTopic, topic)
	dead.Metadata.Set(metaDeadHandler, handler)
	dead.Metadata.Set(metaDeadUUID, msg.UUID)
	dead.Metadata.Set(metaDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	return dead
}

// dedup acknowledges without running a message whose idempotency key this
// handler has handled before. Messages without a key always run.
func (r *Router) dedup(name string, next step) step {
	return func(ctx context.Context, msg *message.Message) error {
		key := msg.Metadata.Get(MetaIdempotencyKey)
		if key == "" {
			return next(ctx, msg)
		}
		// Handler names hold no '/', so scoped keys of two handlers never meet.
		scoped := name + "/" + key
		fresh, err := r.keys.Claim(ctx, scoped)
		if err != nil {
			return &storeError{err}
		}
		if !fresh {
			r.log.InfoContext(ctx, "bus: duplicate message acknowledged without running", "handler", name,
				"message_uuid", msg.UUID, "idempotency_key", key)
			return nil
		}
		err = next(ctx, msg)
		// The outcome is recorded even when ctx ended with the attempt.
		bg := context.WithoutCancel(ctx)
		if err != nil {
			if rerr := r.keys.Release(bg, scoped); rerr != nil {
				r.log.ErrorContext(ctx, "bus: cannot release idempotency key", "handler", name,
					"idempotency_key", key, "error", rerr)
			}
			return err
		}
		if cerr := r.keys.Complete(bg, scoped); cerr != nil {
			// The handler's effect happened; a later duplicate may run again
			// and must rely on the service's own idempotency.
			r.log.ErrorContext(ctx, "bus: cannot record idempotency key", "handler", name,
				"idempotency_key", key, "error", cerr)
		}
		return nil
	}
}

// retry runs next again after a retryable error, waiting InitialInterval,
// then twice that each time up to MaxInterval, for at most MaxRetries
// retries. Other errors return at once.
func (r *Router) retry(name string, next step) step {
	return func(ctx context.Context, msg *message.Message) error {
		delay := r.cfg.RetryInitialInterval
		for attempt := 1; ; attempt++ {
			err := next(context.WithValue(ctx, attemptKey, attempt), msg)
			if err == nil {
				return nil
			}
			if !IsRetryable(err) {
				if attempt > 1 {
					return fmt.Errorf("attempt %d: %w", attempt, err)
				}
				return err
			}
			if attempt > r.cfg.MaxRetries {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			r.log.WarnContext(ctx, "bus: retrying message", "handler", name, "message_uuid", msg.UUID,
				"attempt", attempt, "delay", delay, "error", err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("attempt %d: %w (retry abandoned: %w)", attempt, err, ctx.Err())
			}
			delay = min(delay*2, r.cfg.RetryMaxInterval)
		}
	}
}

// timeout gives each attempt HandlerTimeout. An attempt that fails after
// its deadline passed failed because of it, so the error is marked as a
// timeout, which is retryable: the next attempt may find the slow partner
// faster.
func (r *Router) timeout(next step) step {
	return func(ctx context.Context, msg *message.Message) error {
		actx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
		defer cancel()
		err := next(actx, msg)
		if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			return Retryable(fmt.Errorf("%w after %s: %w", ErrHandlerTimeout, r.cfg.HandlerTimeout, err))
		}
		return err
	}
}

// recoverer turns a panic of h into a *PanicError, so one broken handler
// costs one dead letter rather than the hub.
func recoverer(h HandlerFunc) step {
	return func(ctx context.Context, msg *message.Message) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return h(ctx, msg)
	}
}

// deadLetterFromMessage reads a message of TopicDeadLetters back into a
// DeadLetter, leaving the poison queue's own keys out of its metadata.
func deadLetterFromMessage(msg *message.Message) DeadLetter {
	md := maps.Clone(map[string]string(msg.Metadata))
	if md == nil {
		md = map[string]string{}
	}
	l := DeadLetter{
		Topic:       md[metaDeadTopic],
		Handler:     md[metaDeadHandler],
		Reason:      md[metaDeadReason],
		MessageUUID: md[metaDeadUUID],
		Payload:     append([]byte(nil), msg.Payload...),
		At:          time.Now().UTC(),
	}
	if at, err := time.Parse(time.RFC3339Nano, md[metaDeadAt]); err == nil {
		l.At = at
	}
	for _, k := range []string{metaDeadReason, metaDeadTopic, metaDeadHandler, metaDeadUUID, metaDeadAt, metaDelivery} {
		delete(md, k)
	}
	l.Metadata = md
	return l
}

// storeDeadLetters is the handler of TopicDeadLetters. A store failure is
// retried like a handler's, then the message is left for redelivery: it must
// not be lost, and there is no poison queue for the poison queue.
func (r *Router) storeDeadLetters() message.NoPublishHandlerFunc {
	s := func(ctx context.Context, msg *message.Message) error {
		if err := r.dead.Put(ctx, deadLetterFromMessage(msg)); err != nil {
			return Retryable(err)
		}
		return nil
	}
	return r.correlation(deadLettersHandler, TopicDeadLetters, r.retry(deadLettersHandler, r.timeout(recoverer(s))))
}
