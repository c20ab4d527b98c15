// Package pos is the CityCard channel plugin for the city's POS terminals:
// an acquiring front end speaking ISO 8583 in the UnionPay POS style (see
// package iso) over TCP.
//
// Terminals sign on for working keys, then send purchases, voids,
// refunds, pre-authorisations, their cancellations and completions, balance
// inquiries, reversals, settlements and batch uploads. The plugin checks
// each message's MAC, decrypts PIN blocks, and asks the hub to debit the
// city card (card.payment.v1), to undo a payment (card.reversal.v1), or to
// hold, capture or release money (card.hold.v1, card.capture.v1,
// card.void.v1), under idempotency keys derived from the terminal,
// batch and STAN, so a resent request is one payment. Hub declines map to
// field 39 through the error registry. Cards outside the city card's
// ranges are bank cards: with bank_cards set they are sent to the hub
// like city cards, which has its bank acquirer answer, their PIN blocks
// translated to the PIN zone key shared with it (card.balance_inquiry.v1
// asks a bank card's balance); without, they are declined 15. README.md
// tells the whole story.
package pos

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// Name is the plugin's name.
const Name = "pos"

// Version is the plugin's version.
const Version = "1.0.0"

// Plugin is the POS plugin. Make it with New.
type Plugin struct {
	log *slog.Logger
	j   *journal
	seq atomic.Uint64

	mu  sync.RWMutex
	set *settings
	srv *server // nil until configured
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
		Handles:      []sdk.MessageType{terminalStatusSchema},
		Sends: []sdk.MessageType{
			terminalStateSchema,
			cardPaymentSchema,
			cardReversalSchema,
			cardHoldSchema,
			{Type: TypeCardCapture, SchemaID: "msg-card-capture-v1"},
			{Type: TypeCardVoid, SchemaID: "msg-card-void-v1"},
			cardBalanceInquirySchema,
		},
		ConfigSchema: json.RawMessage(configSchema),
	}
}

// Configure implements sdk.Plugin: it starts the terminals' TCP front end
// on the configured address, replacing the one a previous configuration
// started. Sessions and the journal carry over.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	set, err := parseConfig(raw)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		p.srv.close()
		p.srv, p.set = nil, nil
	}
	h := &host{set: set, hub: hub, j: p.j, log: p.log, seq: &p.seq}
	srv, err := listen(set.listen, h, set.idleTimeout, p.log)
	if err != nil {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/listen", Message: err.Error()}
	}
	p.srv, p.set = srv, set
	p.log.Info("configured", "listen", srv.addr(), "terminals", len(set.terminals), "city_bins", set.cityBINs,
		"hub_timeout", set.hubTimeout, "idle_timeout", set.idleTimeout)
	return nil
}

// Addr returns the address the terminals' front end listens on, or "" when
// the plugin is not configured.
func (p *Plugin) Addr() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.srv == nil {
		return ""
	}
	return p.srv.addr()
}

// Handle implements sdk.Plugin.
func (p *Plugin) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	p.mu.RLock()
	set, srv := p.set, p.srv
	p.mu.RUnlock()
	if srv == nil {
		return nil, &sdk.Error{Code: sdk.CodeNotConfigured, Retryable: true, Message: "the pos plugin has no configuration yet"}
	}
	switch m.Type {
	case TypeTerminalStatus:
		var q struct {
			Terminal string `json:"terminal"`
		}
		if err := json.Unmarshal(m.Payload, &q); err != nil {
			return nil, err
		}
		s := TerminalState{Terminal: q.Terminal, Listen: srv.addr()}
		if t := set.terminals[q.Terminal]; t != nil {
			s.Known = true
			s.MAC = map[bool]string{true: "x919", false: "ecb"}[t.mac == iso.MACX919]
			on, at, b := p.j.state(q.Terminal)
			s.SignedOn, s.Batch = on, b
			if on {
				s.SignedOnAt = at.UTC().Format("2006-01-02T15:04:05Z")
			}
		}
		body, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		return []sdk.Message{{Type: TypeTerminalState, Payload: body}}, nil
	}
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "pos: no handler for %s", m.Type)
}

// Health implements sdk.HealthChecker: the plugin serves while its front
// end listens. The address is in the log line of Configure and in every
// pos.terminal.state.v1.
func (p *Plugin) Health(ctx context.Context) error {
	if p.Addr() == "" {
		return errors.New("pos: not configured: no terminal front end")
	}
	return nil
}

// Stop implements sdk.Plugin: the front end stops taking requests and
// finishes those in flight.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	srv := p.srv
	p.srv, p.set = nil, nil
	p.mu.Unlock()
	if srv != nil {
		srv.close()
	}
	return nil
}
