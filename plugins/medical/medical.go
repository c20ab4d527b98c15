// Package medical is the CityCard channel plugin for hospitals and
// pharmacies: an insured patient's bill is paid by the medical insurance
// first, and what the insurer leaves to the patient by the city card
// (its medical purse, then cash) or a bank card.
//
// It adapts two partners. Hospitals' information systems (HIS) and
// pharmacies post bills to the plugin's HTTP API; the plugin asks the
// insurer who the patient is (1101), registers the visit (2201), uploads
// the fee details (2204) and pre-settles (2206), then hands the bill with
// the pre-settled split to the hub (medical.bill.v1). The hub settles with
// the insurer through the plugin (medical.settle.v1 → 2207), charges the
// card for the rest and answers a receipt, which goes back to the HIS. A
// settlement the insurer does not answer is corrected (2601) and tried
// once more. README.md tells the whole story.
package medical

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
const Name = "medical"

// Version is the plugin's version.
const Version = "1.0.0"

// Plugin is the medical plugin. Make it with New.
type Plugin struct {
	log *slog.Logger
	j   *journal // outlives configurations

	// mu guards st for Health and Addr: the sdk keeps Handle from running
	// while Configure or Stop does, but not them.
	mu sync.RWMutex
	st *state // nil until configured
}

// state is one configuration in force.
type state struct {
	hub        sdk.Hub
	ins        *insurerClient
	insurerURL string
	org        string
	hubTimeout time.Duration
	j          *journal
	log        *slog.Logger
	srv        *server
}

// Option adjusts a Plugin.
type Option func(*Plugin)

// WithLogger makes the plugin log to l instead of JSON on stderr.
func WithLogger(l *slog.Logger) Option { return func(p *Plugin) { p.log = l } }

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{j: newJournal()}
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
		Handles:      []sdk.MessageType{settleSchema, settleReverseSchema, reconcileSchema, statusSchema},
		Sends: []sdk.MessageType{billSchema, refundSchema, settlementSchema, settlementReversalSchema,
			reconciliationSchema, stateSchema},
		ConfigSchema: json.RawMessage(configSchema),
	}
}

type config struct {
	Listen           string `json:"listen"`
	InsurerURL       string `json:"insurer_url"`
	InsurerTimeoutMS int64  `json:"insurer_timeout_ms"`
	HubTimeoutMS     int64  `json:"hub_timeout_ms"`
	OrgCode          string `json:"org_code"`
}

// Configure implements sdk.Plugin: it starts the HTTP API for hospitals on
// the configured address, replacing the one a previous configuration
// started. The journal carries over.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Message: err.Error()}
	}
	u, err := url.Parse(c.InsurerURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/insurer_url", Message: fmt.Sprintf("%q is not an http(s) URL", c.InsurerURL)}
	}
	insTimeout := time.Duration(c.InsurerTimeoutMS) * time.Millisecond
	hubTimeout := time.Duration(c.HubTimeoutMS) * time.Millisecond
	st := &state{hub: hub, ins: newInsurerClient(c.InsurerURL, c.OrgCode, insTimeout), insurerURL: c.InsurerURL,
		org: c.OrgCode, hubTimeout: hubTimeout, j: p.j, log: p.log}

	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.st; old != nil {
		// The old API goes first, so a configuration may keep its address.
		old.srv.close()
		old.ins.close()
		p.st = nil
	}
	srv, err := listen(c.Listen, st, p.log)
	if err != nil {
		st.ins.close()
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/listen", Message: err.Error()}
	}
	st.srv = srv
	p.st = st
	p.log.Info("configured", "listen", srv.addr(), "insurer_url", c.InsurerURL, "org_code", c.OrgCode,
		"insurer_timeout", insTimeout, "hub_timeout", hubTimeout)
	return nil
}

func (p *Plugin) state() *state {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.st
}

// Addr returns the address the HTTP API for hospitals listens on, or ""
// when the plugin is not configured. The hub (and the demo) learn it from
// medical.status.v1, and the log line of Configure gives it too.
func (p *Plugin) Addr() string {
	if st := p.state(); st != nil {
		return st.srv.addr()
	}
	return ""
}

// Handle implements sdk.Plugin.
func (p *Plugin) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	// Never nil: the sdk answers not_configured itself, and never calls
	// Handle while Configure or Stop runs.
	st := p.state()
	log := p.log.With("correlation_id", sdk.CorrelationID(ctx), "message_id", m.ID, "type", m.Type)
	switch m.Type {
	case TypeSettle:
		var in SettleMessage
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		return reply(st.settle(ctx, log.With("bill_key", in.BillKey), in))
	case TypeSettleReverse:
		var in SettleReverseMessage
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		return reply(st.reverse(ctx, log.With("bill_key", in.BillKey), in))
	case TypeReconcile:
		var in struct {
			Date string `json:"date"`
		}
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		r, err := st.reconcile(ctx, in.Date)
		if err != nil {
			return nil, err
		}
		return reply(TypeReconciliation, r, nil)
	case TypeStatus:
		return reply(TypeState, State{Listen: st.srv.addr(), InsurerURL: st.insurerURL, OrgCode: st.org}, nil)
	}
	// The sdk delivers only declared types; getting here is a bug in Describe.
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "medical: no handler for %s", m.Type)
}

// Health implements sdk.HealthChecker: the plugin can serve when its API
// listens and the insurer answers.
func (p *Plugin) Health(ctx context.Context) error {
	// The sdk calls Health only once configured, but not under its lock:
	// a Stop may have come between.
	st := p.state()
	if st == nil {
		return errors.New("medical: not configured")
	}
	if err := st.ins.health(ctx); err != nil {
		return fmt.Errorf("medical: the insurer: %w", err)
	}
	return nil
}

// Stop implements sdk.Plugin: the API stops taking bills and finishes
// those in flight.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	st := p.st
	p.st = nil
	p.mu.Unlock()
	if st != nil {
		st.srv.close()
		st.ins.close()
	}
	return nil
}

func reply(typ string, payload any, err error) ([]sdk.Message, error) {
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: typ, Payload: body}}, nil
}
