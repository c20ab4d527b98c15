// Package unionpay is the CityCard plugin for the acquirer link from the
// city's hub to the UnionPay switch: bank-card authorisations and their
// reversals over ISO 8583 (plugins/pos/iso), with sign-on and key exchange,
// keep-alive echoes, MACs, reconnection, and store-and-forward of
// reversals in a journal that survives restarts. README.md describes the
// messages, the configuration and what the hub must do; package sim is a
// switch to run it against.
package unionpay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/sdk"
)

// Plugin is the UnionPay acquirer link as a CityCard plugin.
type Plugin struct {
	log *slog.Logger

	mu       sync.Mutex
	s        settings
	j        *journal
	link     *link
	inflight map[string]*flight // authorisations on the wire, by idempotency key
}

// flight is one authorisation in progress; a redelivery waits for it.
type flight struct {
	done chan struct{}
	ans  Authorization
	err  error
}

// New returns the plugin, logging JSON to stderr.
func New() *Plugin {
	return NewWithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

// NewWithLogger returns the plugin logging to log.
func NewWithLogger(log *slog.Logger) *Plugin {
	return &Plugin{log: log, inflight: map[string]*flight{}}
}

// Describe declares the messages and the configuration.
func (p *Plugin) Describe() sdk.Descriptor { return descriptor() }

// Configure opens the journal in the state directory and starts the link.
// It waits briefly for the first sign-on but never fails for want of the
// switch, whose state Health reports.
func (p *Plugin) Configure(ctx context.Context, config json.RawMessage, hub sdk.Hub) error {
	s, err := parseConfig(config)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shutdownLocked()
	j, err := openJournal(s.stateDir)
	if err != nil {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Message: err.Error(), Field: "/state_dir"}
	}
	p.s, p.j = s, j
	p.link = newLink(s, j, p.log.With("switch", s.addr))
	p.link.start()
	// Give the first sign-on a moment, so a healthy switch finds the
	// plugin healthy at once; a switch that is down is Health's to report.
	p.link.waitUp(ctx, min(s.responseTimeout, 2*time.Second))
	return nil
}

func (p *Plugin) shutdownLocked() {
	if p.link != nil {
		p.link.stop()
		p.link = nil
	}
	if p.j != nil {
		_ = p.j.close()
		p.j = nil
	}
}

// Stop closes the link and the journal; queued reversals wait in the
// journal for the next start.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shutdownLocked()
	return nil
}

// Health reports whether the link is signed on to the switch.
func (p *Plugin) Health(ctx context.Context) error {
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	if l == nil {
		return &sdk.Error{Code: sdk.CodeNotConfigured, Message: "unionpay: not configured"}
	}
	if err := l.health(); err != nil {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: err.Error(), Retryable: true}
	}
	return nil
}

func (p *Plugin) current() (*link, *journal, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.link == nil {
		return nil, nil, &sdk.Error{Code: sdk.CodeNotConfigured, Message: "unionpay: not configured"}
	}
	return p.link, p.j, nil
}

// Handle authorises or reverses.
func (p *Plugin) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	var body any
	var typ string
	var err error
	switch m.Type {
	case TypeAuthorize:
		typ = TypeAuthorization
		body, err = p.authorize(ctx, m)
	case TypeReverse:
		typ = TypeReversal
		body, err = p.reverse(ctx, m)
	default:
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessage, Message: "unionpay: " + m.Type}
	}
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: typ, Payload: raw}}, nil
}

func (p *Plugin) authorize(ctx context.Context, m sdk.Message) (Authorization, error) {
	if m.IdempotencyKey == "" {
		return Authorization{}, &sdk.Error{Code: "idempotency_key_required", Message: "unionpay: an authorisation needs the envelope's idempotency key", Field: "/idempotency_key"}
	}
	var req authorize
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: " + err.Error(), Field: "/payload"}
	}
	l, j, err := p.current()
	if err != nil {
		return Authorization{}, err
	}
	key := m.IdempotencyKey

	p.mu.Lock()
	if ans, ok := j.answer(key); ok {
		p.mu.Unlock()
		return ans, nil
	}
	if f, ok := p.inflight[key]; ok {
		p.mu.Unlock()
		select {
		case <-f.done:
			return f.ans, f.err
		case <-ctx.Done():
			return Authorization{}, &sdk.Error{Code: sdk.CodeTimeout, Message: "unionpay: the first delivery is still waiting for the switch", Retryable: true}
		}
	}
	f := &flight{done: make(chan struct{})}
	p.inflight[key] = f
	p.mu.Unlock()

	f.ans, f.err = p.send(l, key, req)
	p.mu.Lock()
	delete(p.inflight, key)
	p.mu.Unlock()
	close(f.done)
	return f.ans, f.err
}

// send checks the card locally and sends the authorisation.
func (p *Plugin) send(l *link, key string, req authorize) (Authorization, error) {
	pan, err := cardcrypto.ParsePAN(req.PAN)
	if err != nil {
		// A number failing Luhn never goes to the switch: declined here as
		// the issuer would (14), with nothing to reverse.
		return Authorization{Status: Declined, ResponseCode: rcInvalidCard, STAN: "000000", MaskedPAN: cardcrypto.MaskPAN(req.PAN)}, nil
	}
	pin, err := decodePINBlock(req.PINBlock)
	if err != nil {
		return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: pin_block is not hex", Field: "/payload/pin_block"}
	}
	if req.Track2 != "" {
		t2, err := cardcrypto.ParseTrack2(req.Track2)
		if err != nil || !t2.PAN.Equal(pan) {
			return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: track2 does not hold the card's number", Field: "/payload/track2"}
		}
	}
	ans, err := l.authorize(authorization{key: key, pan: pan, expiry: req.Expiry, amount: req.Amount,
		currency: currencies[req.Currency], merchant: padRight(req.Merchant, 15), terminal: padRight(req.Terminal, 8), pinBlock: pin, track2: req.Track2})
	if errors.Is(err, errNotSent) {
		return Authorization{}, &sdk.Error{Code: sdk.CodeUnavailable, Message: err.Error(), Retryable: true}
	}
	return ans, err
}

func (p *Plugin) reverse(ctx context.Context, m sdk.Message) (ReversalReply, error) {
	var req reverse
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		return ReversalReply{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: " + err.Error(), Field: "/payload"}
	}
	l, j, err := p.current()
	if err != nil {
		return ReversalReply{}, err
	}
	key := req.AuthorizationKey
	out := ReversalReply{AuthorizationKey: key}
	p.mu.Lock()
	f := p.inflight[key]
	p.mu.Unlock()
	if f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ReversalReply{}, &sdk.Error{Code: sdk.CodeTimeout, Message: "unionpay: the authorisation is still waiting for the switch", Retryable: true}
		}
	}
	ans, ok := j.answer(key)
	o, sent := j.original(key)
	if !ok || !sent {
		// Never authorised here, or declined before reaching the switch.
		if ok {
			out.Status = Reversed
		} else {
			out.Status = UnknownOriginal
		}
		return out, nil
	}
	acked, queued := j.reversalState(key)
	switch {
	case acked:
		out.Status = Reversed
		return out, nil
	case !queued && ans.Status == Declined && ans.ResponseCode != rcTimeout && ans.ResponseCode != rcMACError:
		// The switch declined it: nothing stands to undo.
		out.Status = Reversed
		return out, nil
	case !queued:
		o.Reason = reasonCancel
		if err := j.write(record{Op: "queue", Key: key, Orig: &o}); err != nil {
			return ReversalReply{}, err
		}
		l.kickPump()
	}
	wait := l.s.responseTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d)-100*time.Millisecond < wait {
		wait = max(time.Until(d)-100*time.Millisecond, 0)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-j.ackedCh(key):
		out.Status = Reversed
	case <-t.C:
		out.Status = Queued
	case <-ctx.Done():
		out.Status = Queued
	}
	return out, nil
}

// padRight pads s with spaces to n characters, as fields 41 and 42 are
// fixed-length: the hub's merchant and terminal ids are often shorter.
func padRight(s string, n int) string {
	for len(s) < n {
		s += " "
	}
	return s
}
