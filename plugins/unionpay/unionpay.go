// Package unionpay is the CityCard plugin for the acquirer link from the
// city's hub to the UnionPay switch: bank-card purchases and
// pre-authorisations, their completions, voids, refunds, cancellations and
// reversals, and balance inquiries over ISO 8583 (sdk/pos/iso), with
// sign-on and key exchange, PIN translation, keep-alive echoes, MACs,
// reconnection, store-and-forward of reversals in a journal that survives
// restarts, and a vault of linked bank cards (tokens). README.md describes the
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

	"github.com/citycard/citycard/sdk"
)

// Plugin is the UnionPay acquirer link as a CityCard plugin.
type Plugin struct {
	log *slog.Logger

	mu       sync.Mutex
	s        settings
	j        *journal
	v        *vault // nil without key_store
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
	var v *vault
	if s.store != nil {
		if v, err = openVault(s.stateDir, s.store); err != nil {
			_ = j.close()
			return &sdk.Error{Code: sdk.CodeConfigInvalid, Message: err.Error(), Field: "/key_store"}
		}
	}
	p.s, p.j, p.v = s, j, v
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
	if p.v != nil {
		_ = p.v.close()
		p.v = nil
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

// Handle authorises, completes, cancels, reverses, tokenises or asks for a
// balance.
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
	case TypeTokenize:
		typ = TypeToken
		body, err = p.tokenize(m)
	case TypeComplete:
		typ = TypeAuthorization
		body, err = p.complete(ctx, m)
	case TypeCancel:
		typ = TypeAuthorization
		body, err = p.cancel(ctx, m)
	case TypeBalance:
		typ = TypeAuthorization
		body, err = p.balance(ctx, m)
	default:
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Message: "unionpay: " + m.Type}
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
	var req authorize
	l, key, err := p.prepare(m, &req)
	if err != nil {
		return Authorization{}, err
	}
	return p.once(ctx, key, func() (Authorization, error) { return p.sendAuthorize(l, key, req) })
}

// prepare checks the envelope's idempotency key, decodes the payload into
// req and returns the link.
func (p *Plugin) prepare(m sdk.Message, req any) (*link, string, error) {
	if m.IdempotencyKey == "" {
		return nil, "", &sdk.Error{Code: sdk.CodeIdempotencyKeyRequired, Message: "unionpay: " + m.Type + " needs the envelope's idempotency key", Field: "/idempotency_key"}
	}
	if err := json.Unmarshal(m.Payload, req); err != nil {
		return nil, "", &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: " + err.Error(), Field: "/payload"}
	}
	l, _, err := p.current()
	if err != nil {
		return nil, "", err
	}
	return l, m.IdempotencyKey, nil
}

// once runs send for key unless the journal holds its answer or a delivery
// of the same key is already in flight, whose answer it then waits for.
func (p *Plugin) once(ctx context.Context, key string, send func() (Authorization, error)) (Authorization, error) {
	_, j, err := p.current()
	if err != nil {
		return Authorization{}, err
	}
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

	f.ans, f.err = send()
	if errors.Is(f.err, errNotSent) {
		f.err = &sdk.Error{Code: sdk.CodeUnavailable, Message: f.err.Error(), Retryable: true}
	}
	p.mu.Lock()
	delete(p.inflight, key)
	p.mu.Unlock()
	close(f.done)
	return f.ans, f.err
}

// waitFlight waits for a delivery of key in flight, if any.
func (p *Plugin) waitFlight(ctx context.Context, key string) error {
	p.mu.Lock()
	f := p.inflight[key]
	p.mu.Unlock()
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return &sdk.Error{Code: sdk.CodeTimeout, Message: "unionpay: the original is still waiting for the switch", Retryable: true}
	}
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
	if err := p.waitFlight(ctx, key); err != nil {
		return ReversalReply{}, err
	}
	buried, err := p.tombstone(ctx, key)
	if err != nil {
		return ReversalReply{}, err
	}
	if buried {
		// Never seen here: the authorisation may still be on its way (a
		// redelivery after the hub gave up on it); it will be declined.
		out.Status = UnknownOriginal
		return out, nil
	}
	ans, ok := j.answer(key)
	o, sent := j.original(key)
	if k := o.kind(); sent && k != kindPurchase && k != kindPreAuth && k != kindCompletion {
		// Voids, refunds, cancellations and inquiries are not reversed.
		out.Status = UnknownOriginal
		return out, nil
	}
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

// tombstone records, for an authorisation key this plugin has never seen
// (neither answered nor sent, nor in flight), a declined answer that was
// never sent to the switch: a reversal or cancellation of it arrived first,
// so the sender has given up on it, and the authorisation, if it comes
// later (a redelivery, before or after a restart), is answered with that
// decline instead of being authorised. It reports whether it buried key;
// false means the key is known (or in flight, which it waits for).
func (p *Plugin) tombstone(ctx context.Context, key string) (bool, error) {
	_, j, err := p.current()
	if err != nil {
		return false, err
	}
	for {
		p.mu.Lock()
		if _, ok := p.inflight[key]; !ok {
			break
		}
		p.mu.Unlock()
		if err := p.waitFlight(ctx, key); err != nil {
			return false, err
		}
	}
	// p.mu is held: once cannot start a delivery of key meanwhile.
	defer p.mu.Unlock()
	if _, ok := j.answer(key); ok {
		return false, nil
	}
	if _, ok := j.original(key); ok {
		return false, nil
	}
	ans := Authorization{Status: Declined, ResponseCode: rcTimeout, STAN: "000000"}
	if err := j.write(record{Op: "answer", Key: key, Answer: &ans}); err != nil {
		return false, err
	}
	p.log.Info("unionpay: undone before it was authorised; the authorisation will be declined", "authorization_key", key)
	return true, nil
}

// padRight pads s with spaces to n characters, as fields 41 and 42 are
// fixed-length: the hub's merchant and terminal ids are often shorter.
func padRight(s string, n int) string {
	for len(s) < n {
		s += " "
	}
	return s
}
