// Package utilities is the CityCard channel plugin for utility bills:
// a resident pays the water, power, telecom, broadband or cable TV bill
// with the city card.
//
// It reads the bill from the billers' host, checks the biller's rules on
// partial and over-payment, asks the hub to debit the card
// (card.payment.v1), then pays the biller. Every step is idempotent under
// keys derived from the pay message's own idempotency key, so the hub may
// redeliver a message as often as it likes and the resident pays once. If
// the biller refuses after the card was charged, the plugin reverses the
// charge (card.reversal.v1); if the biller cannot be reached, it answers a
// retryable error and lets the redelivery finish the job. README.md tells
// the whole story.
package utilities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk"
)

// Name is the plugin's name, and the hub's channel for it.
const Name = "utilities"

// Version is the plugin's version.
const Version = "1.0.0"

// Plugin is the utilities plugin. Make it with New.
type Plugin struct {
	log *slog.Logger

	mu sync.RWMutex
	st *state // nil until configured
}

// state is one configuration in force.
type state struct {
	hub     sdk.Hub
	billers map[string]string // biller code → hub merchant id
	biller  *billerClient
}

// Option adjusts a Plugin.
type Option func(*Plugin)

// WithLogger makes the plugin log to l instead of JSON on stderr.
func WithLogger(l *slog.Logger) Option { return func(p *Plugin) { p.log = l } }

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	p.log = p.log.With("plugin", Name)
	return p
}

// Describe implements sdk.Plugin.
func (*Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:         Name,
		Version:      Version,
		Capabilities: []string{"idempotent"},
		Handles:      []sdk.MessageType{billQuerySchema, billPaySchema},
		Sends: []sdk.MessageType{
			billSchema, receiptSchema,
			{Type: TypeCardPayment, SchemaID: "msg-card-payment-v1"},
			{Type: TypeCardReversal, SchemaID: "msg-card-reversal-v1"},
		},
		ConfigSchema: json.RawMessage(configSchema),
	}
}

type config struct {
	BillerURL string `json:"biller_url"`
	Billers   map[string]struct {
		Merchant string `json:"merchant"`
	} `json:"billers"`
	RequestTimeoutMS int64 `json:"request_timeout_ms"`
}

// Configure implements sdk.Plugin. The sdk has checked the configuration
// against the schema and filled in its defaults; what the schema cannot say
// is checked here.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Message: err.Error()}
	}
	u, err := url.Parse(c.BillerURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/biller_url", Message: fmt.Sprintf("%q is not an http(s) URL", c.BillerURL)}
	}
	timeout := time.Duration(c.RequestTimeoutMS) * time.Millisecond
	st := &state{hub: hub, billers: make(map[string]string, len(c.Billers)), biller: newBillerClient(c.BillerURL, timeout)}
	for code, b := range c.Billers {
		st.billers[code] = b.Merchant
	}
	p.mu.Lock()
	old := p.st
	p.st = st
	p.mu.Unlock()
	if old != nil {
		old.biller.close()
	}
	p.log.Info("configured", "biller_url", c.BillerURL, "billers", len(st.billers), "request_timeout", timeout)
	return nil
}

func (p *Plugin) state() *state {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.st
}

// Handle implements sdk.Plugin.
func (p *Plugin) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	// Never nil: the sdk answers not_configured itself, and never calls
	// Handle while Configure or Stop runs.
	st := p.state()
	log := p.log.With("correlation_id", sdk.CorrelationID(ctx), "message_id", m.ID, "type", m.Type)
	switch m.Type {
	case TypeBillQuery:
		var q billQuery
		if err := json.Unmarshal(m.Payload, &q); err != nil {
			return nil, err
		}
		return st.query(ctx, log, q)
	case TypeBillPay:
		var in billPay
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		return st.pay(ctx, log.With("idempotency_key", m.IdempotencyKey), m.IdempotencyKey, in)
	}
	// The sdk delivers only declared types; getting here is a bug in Describe.
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "utilities: no handler for %s", m.Type)
}

// query answers the current bill.
func (st *state) query(ctx context.Context, log *slog.Logger, q billQuery) ([]sdk.Message, error) {
	if _, ok := st.billers[q.Biller]; !ok {
		return nil, unknownBiller(q.Biller)
	}
	b, err := st.biller.bill(ctx, q.Biller, q.Account)
	if err != nil {
		return nil, billerFailure(log, "reading the bill", err)
	}
	log.Info("bill read", "biller", q.Biller, "account", q.Account, "bill_id", b.ID, "outstanding", b.Outstanding)
	return reply(TypeBill, b)
}

// Health implements sdk.HealthChecker: the plugin can serve when the
// billers' host answers.
func (p *Plugin) Health(ctx context.Context) error {
	st := p.state()
	if st == nil {
		return errors.New("utilities: not configured")
	}
	if err := st.biller.health(ctx); err != nil {
		return fmt.Errorf("utilities: %w", err)
	}
	return nil
}

// Stop implements sdk.Plugin. Nothing is buffered: every payment is
// finished, or left for the hub to redeliver, before Handle returns.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	st := p.st
	p.st = nil
	p.mu.Unlock()
	if st != nil {
		st.biller.close()
	}
	return nil
}

func unknownBiller(code string) *sdk.Error {
	return &sdk.Error{Code: sdk.CodeNotFound, Field: "/payload/biller", Message: fmt.Sprintf("no biller %q is configured for the utilities channel", code)}
}

// billerFailure turns a failed call to the billers' host into the answer
// to the hub: a refusal keeps its meaning; anything else is retryable.
func billerFailure(log *slog.Logger, what string, err error) *sdk.Error {
	var r *refusal
	if errors.As(err, &r) {
		log.Info("biller refused", "step", what, "biller_code", r.Code, "reason", r.Message)
		return r.hubError()
	}
	log.Warn("biller unreachable", "step", what, "err", err)
	return unavailable(what, err)
}

func reply(typ string, payload any) ([]sdk.Message, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: typ, Payload: body}}, nil
}
