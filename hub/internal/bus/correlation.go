package bus

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// Metadata keys the router reads and writes on every message.
const (
	// MetaCorrelationID ties together every message, log line and plugin
	// call caused by one request. Watermill's middleware uses the same key.
	MetaCorrelationID = "correlation_id"
	// MetaIdempotencyKey is the sender's key for one intended effect: two
	// messages with the same key reach each handler once.
	MetaIdempotencyKey = "idempotency_key"
)

type ctxKey int

const (
	correlationKey ctxKey = iota
	attemptKey
)

// WithCorrelationID returns ctx carrying id. Publish stamps it on messages
// that have none, so an API request's ID follows its messages.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation ID ctx carries, or "". Handlers get
// the ID of the message they handle.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}

// Attempt returns which attempt at handling the current message ctx belongs
// to, starting at 1; 0 outside a handler.
func Attempt(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey).(int)
	return n
}

// newCorrelationID is used when a message enters without one, so that at
// least everything downstream of the bus can be tied together.
func newCorrelationID() string { return watermill.NewULID() }

// NewLogHandler wraps h so that a record logged with a context carrying a
// correlation ID (logger.InfoContext(ctx, ...)) gets a correlation_id
// attribute. Wrap the hub's root handler once; every service logging with
// its handler's ctx then shows which request a line belongs to.
func NewLogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(logHandler); ok {
		return h
	}
	return logHandler{h}
}

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := CorrelationID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String(MetaCorrelationID, id))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(attrs)}
}

func (l logHandler) WithGroup(name string) slog.Handler {
	return logHandler{l.Handler.WithGroup(name)}
}
