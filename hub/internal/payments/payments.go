// Package payments applies the hub messages plugins submit that move money:
// card payments, holds and their captures and voids, reversals, balance
// inquiries and medical bills. A bank card is routed to the bank acquirer
// plugin; a payment with legs beyond the ledger (a linked bank card's part,
// an insurer's share) runs as a saga kept in the store, which a stopped hub
// finishes or undoes on recovery (see RecoverSagas).
//
// Each message type has a handler in the table handlers, in a file of its
// own named after the type. Handlers decode the payload into the sdk's
// vocabulary (sdk.CardPayment, sdk.MedicalBill…), so the hub and plugins
// read the same structs. The package knows nothing of the router: the
// gateway hands it each message and carries the answer back, and it
// reaches plugins through the Plugins interface.
package payments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// OperatorPrefix starts the operator name under which a plugin's writes
// are idempotent and audited: "plugin:transit".
const OperatorPrefix = "plugin:"

// Plugins sends the hub's messages to plugins and returns their replies:
// the gateway's Send.
type Plugins interface {
	Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error)
}

// Options configure a Processor.
type Options struct {
	Service *cards.Service
	Logger  *slog.Logger
	// Channels maps a plugin's name to the channel policy its card
	// payments are made under. A plugin with none cannot submit payments.
	Channels map[string]string
	// IssuerPrefix starts the city's card numbers; a card.payment.v1 for
	// any other number is a bank card, sent to BankPlugin.
	IssuerPrefix string
	// BankPlugin is the plugin that authorises bank cards
	// (unionpay.authorize.v1); "" declines them.
	BankPlugin string
	// BankTimeout bounds each call to BankPlugin (default 30s).
	BankTimeout time.Duration
	// InsurerTimeout bounds each settlement or reversal a medical plugin
	// carries out with the insurer (default 60s).
	InsurerTimeout time.Duration
	// Sagas keeps the payments with legs beyond the ledger (a linked bank
	// card's part, an insurer's) and the bank cards holders link; nil
	// takes no such payments.
	Sagas store.SagaStore
}

// Processor applies plugins' payment messages with the card service.
type Processor struct {
	opts    Options
	log     *slog.Logger
	plugins Plugins
	// Work that outlives the message it came from (reversing at the
	// acquirer what the hub gave up on) runs in bg until quit.
	bgMu sync.Mutex // orders background starts against Close
	bg   sync.WaitGroup
	quit chan struct{}
}

// New returns a Processor. It reaches no plugin until SetPlugins.
func New(opts Options) *Processor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Processor{opts: opts, log: opts.Logger, quit: make(chan struct{})}
}

// Close stops the processor's background work and waits for it: call it
// before the plugins it reaches are stopped.
func (p *Processor) Close() {
	p.bgMu.Lock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.bgMu.Unlock()
	p.bg.Wait()
}

// background runs f on its own goroutine until it returns, unless the
// processor is closed: then it reports false and runs nothing.
func (p *Processor) background(f func()) bool {
	p.bgMu.Lock()
	defer p.bgMu.Unlock()
	select {
	case <-p.quit:
		return false
	default:
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
	return true
}

// SetPlugins gives the processor the way to plugins, which is built after
// it (the gateway needs the processor to hand it messages).
func (p *Processor) SetPlugins(pl Plugins) { p.plugins = pl }

// request is one plugin message being applied.
type request struct {
	plugin string
	call   cards.Call
	msg    sdk.Message
}

// handler applies one message type.
type handler func(p *Processor, ctx context.Context, r request) (ledger.Outcome, error)

// handlers maps each message type the processor applies to its handler.
var handlers = map[string]handler{
	sdk.TypeCardPayment:        (*Processor).payment,
	sdk.TypeCardHold:           (*Processor).hold,
	sdk.TypeCardCapture:        (*Processor).capture,
	sdk.TypeCardVoid:           (*Processor).void,
	sdk.TypeCardReversal:       (*Processor).reversal,
	sdk.TypeCardBalanceInquiry: (*Processor).balanceInquiry,
	sdk.TypeMedicalBill:        (*Processor).medicalBill,
	sdk.TypeMedicalRefund:      (*Processor).medicalRefund,
}

// Apply applies plugin's message m of type typ (the topic's type, which
// the gateway has checked m against). Refusals an answer can carry (an
// unknown card, a decline) come back as the outcome or as a fault error;
// an error ledger.IsRetryable says may be tried again.
func (p *Processor) Apply(ctx context.Context, plugin, typ string, m sdk.Message) (ledger.Outcome, error) {
	h, ok := handlers[typ]
	if !ok {
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "type", "no service for "+typ)
	}
	return h(p, ctx, request{plugin: plugin, call: call(plugin, m), msg: m})
}

// decode reads a message's payload into the vocabulary struct T.
func decode[T any](m sdk.Message) (T, error) {
	var v T
	if err := json.Unmarshal(m.Payload, &v); err != nil {
		return v, fault.Wrap(fault.InvalidJSON, err)
	}
	return v, nil
}

// channel is the channel policy plugin's payments are made under; what
// names the refused action in the error.
func (p *Processor) channel(plugin, what string) (string, error) {
	channel := p.opts.Channels[plugin]
	if channel == "" {
		return "", fault.E(fault.InvalidRequest, "channel",
			fmt.Sprintf("plugin %s has no channel in the hub's plugin configuration, so it cannot %s", plugin, what))
	}
	return channel, nil
}

// call is the card service's call for plugin's message: idempotent under
// the message's key, with a hash of its type and payload, so the same key
// with another body is refused.
func call(plugin string, m sdk.Message) cards.Call {
	sum := sha256.Sum256([]byte(m.Type + "\n" + string(m.Payload)))
	return cards.Call{Operator: OperatorPrefix + plugin, Role: "plugin", RequestID: m.ID,
		IdempotencyKey: m.IdempotencyKey, RequestHash: hex.EncodeToString(sum[:]), Encode: encode}
}

func encode(result any) (int, []byte, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return 0, nil, fault.Wrap(fault.Internal, err)
	}
	return 200, b, nil
}

// answered is the answer recorded for c's request, if there is one.
func (p *Processor) answered(ctx context.Context, c cards.Call) (ledger.Outcome, bool, error) {
	body, ok, err := p.opts.Service.Answer(ctx, c.Operator, c.IdempotencyKey)
	if err != nil || !ok {
		return ledger.Outcome{}, false, err
	}
	return ledger.Outcome{Status: 200, Body: body, Replayed: true}, true, nil
}

// approved returns a plugin's approved payment or hold, answered under
// its message's idempotency key, and the id of its transfer or hold (0 for
// a bank card's pre-authorisation, which the hub does not hold); code,
// field and what name the error when there is none.
func (p *Processor) approved(ctx context.Context, plugin, key, field, code, what string) (cards.PaymentResult, int64, error) {
	var r cards.PaymentResult
	body, ok, err := p.opts.Service.Answer(ctx, OperatorPrefix+plugin, key)
	if err != nil {
		return r, 0, err
	}
	if !ok || json.Unmarshal(body, &r) != nil || r.Status != cards.Approved || (r.ID == "" && r.BankKey == "") {
		return r, 0, notApproved(plugin, key, field, code, what)
	}
	if r.ID == "" {
		return r, 0, nil
	}
	id, err := strconv.ParseInt(r.ID, 10, 64)
	if err != nil {
		return r, 0, notApproved(plugin, key, field, code, what)
	}
	return r, id, nil
}

// approvedOrForestalled is approved for an undo (a reversal, a void). If
// nothing is found under key, the request may still be on its way to the
// ledger (its plugin died before it learned the answer, and the terminal
// reversed first): the key is taken, so the request, if it comes, writes
// nothing; or, if the request got there first, its answer is read again.
func (p *Processor) approvedOrForestalled(ctx context.Context, c cards.Call, plugin, key, field, code, what string) (cards.PaymentResult, int64, error) {
	r, id, err := p.approved(ctx, plugin, key, field, code, what)
	if !fault.Is(err, code) || key == "" {
		return r, id, err
	}
	taken, ferr := p.opts.Service.Forestall(ctx, c, key)
	if ferr != nil {
		return r, 0, ferr
	}
	if taken {
		return r, 0, err
	}
	return p.approved(ctx, plugin, key, field, code, what)
}

// approvedByKey is the id of a plugin's approved payment or hold in the
// ledger, by its message's idempotency key.
func (p *Processor) approvedByKey(ctx context.Context, plugin, key, field, code, what string) (int64, error) {
	_, id, err := p.approved(ctx, plugin, key, field, code, what)
	if err == nil && id == 0 {
		err = notApproved(plugin, key, field, code, what)
	}
	return id, err
}

func notApproved(plugin, key, field, code, what string) error {
	return fault.E(code, field, fmt.Sprintf("plugin %s made no approved %s with idempotency key %q", plugin, what, key))
}

// answerable reports whether a refusal's code can stand as a payment's
// decline reason: a decline, or an error about the request itself (an
// unknown card or merchant). A failure of the hub or a partner cannot; the
// payment is then declined as interrupted.
func answerable(code string) bool {
	d, ok := schemas.LookupError(code)
	if !ok {
		return false
	}
	// A retryable error (in progress, unavailable) is no answer about the
	// request: the registry says which those are.
	return d.Kind == schemas.KindDecline || (d.HTTPStatus >= 400 && d.HTTPStatus < 500 && !d.Retryable)
}

// declineCode maps an acquirer's ISO 8583 response code to the registry's
// code for it: the first decline with that ISO code, else the first error.
func declineCode(iso string) string {
	var fallback string
	for _, d := range schemas.Errors() {
		if d.ISO8583 != iso || iso == "" {
			continue
		}
		if d.Kind == schemas.KindDecline {
			return d.Code
		}
		if fallback == "" {
			fallback = d.Code
		}
	}
	if fallback != "" {
		return fallback
	}
	return fault.RiskDeclined
}

// send hands m to plugin and returns its replies.
func (p *Processor) send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if p.plugins == nil {
		return nil, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "no plugins are running"}
	}
	return p.plugins.Send(ctx, plugin, m)
}
