// Package gateway joins the plugin host to the hub's services through the
// message router.
//
// Messages a plugin submits are checked against the hub's own schema for
// their type (a plugin cannot loosen it by carrying a schema of its own),
// published on the topic plugin.<plugin>.<type>, and applied by the hub
// service subscribed there; the answer goes back to the plugin's Submit.
// Messages the hub sends a plugin take the opposite way: published on
// hub.to-<plugin>.<type>, handed to the plugin by a router handler, so a
// plugin that is down or restarting is retried with backoff and a message
// that keeps failing lands in the dead letters, from where it can be
// replayed.
//
// Every write a plugin asks for is idempotent in the ledger under the key
// (operator "plugin:<name>", the envelope's idempotency key), committed in
// the same transaction as its effect. That, not the router's in-memory
// de-duplication, is what makes a message delivered twice, or resubmitted
// by a plugin that crashed before it heard the answer, one effect.
package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/payments"
	"github.com/citycard/citycard/hub/internal/transit"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// HubTypes maps each message type a hub service handles to the schema (a
// file stem of package schemas) its payload must meet whatever the plugin
// declared. Transit taps go to the transit service; the rest to payments.
var HubTypes = map[string]string{
	sdk.TypeCardPayment:  "msg-card-payment-v1",
	sdk.TypeCardReversal: "msg-card-reversal-v1",
	sdk.TypeTransitTaps:  "msg-transit-taps-v1",
	sdk.TypeCardHold:     "msg-card-hold-v1",
	sdk.TypeCardCapture:  "msg-card-capture-v1",
	sdk.TypeCardVoid:     "msg-card-void-v1",
	// A read: its idempotency key is optional.
	sdk.TypeCardBalanceInquiry: "msg-card-balance-inquiry-v1",
	sdk.TypeMedicalBill:        "msg-medical-bill-v1",
	sdk.TypeMedicalRefund:      "msg-medical-refund-v1",
}

// Query kinds the hub answers beyond the sdk's.
const (
	// QueryDenylist reads the transit deny list: key "" for the whole
	// list, "since:V" for the changes after version V.
	QueryDenylist = "denylist"
	// QueryCardBalance reads a card's balance (msg-card-balance-v1.json);
	// the key is the card number.
	QueryCardBalance = sdk.QueryCardBalance
)

// Metadata keys the gateway sets on router messages.
const (
	metaWaiter = "waiter" // id of the call waiting for the answer
	metaNode   = "node"   // the hub node that waits
	metaPlugin = "plugin" // plugin a hub message is for
)

// OperatorPrefix starts the operator name under which a plugin's writes
// are idempotent and audited: "plugin:transit".
const OperatorPrefix = payments.OperatorPrefix

// Plugins is the part of the plugin host the gateway uses.
type Plugins interface {
	Handle(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error)
	Describe(plugin string) (sdk.Descriptor, bool)
}

// Payments applies the messages plugins submit that move money
// (payments.Processor).
type Payments interface {
	Apply(ctx context.Context, plugin, typ string, m sdk.Message) (ledger.Outcome, error)
}

// Options configure a Gateway.
type Options struct {
	Router *bus.Router
	// Service answers the queries and the answers stored in the ledger.
	Service *cards.Service
	Logger  *slog.Logger
	// Registerer receives the gateway's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Transit posts transit taps and keeps the deny list; nil refuses
	// transit.taps.v1 and the deny-list queries.
	Transit *transit.Service
	// Payments applies every hub message type but transit taps; nil
	// refuses them.
	Payments Payments
}

// Gateway is the hub side of every plugin: it implements sdk.Hub for each
// (see For) and sends hub messages to plugins (see Send).
type Gateway struct {
	opts    Options
	log     *slog.Logger
	node    string
	plugins Plugins

	mu      sync.Mutex
	waiters map[string]chan answer

	// submissions counts plugins' messages by plugin, type and outcome:
	// "published" (on its topic) or "refused" (checked and sent back).
	submissions *prometheus.CounterVec
}

// answer is what a router handler hands back to the call waiting for it.
type answer struct {
	result  sdk.Result
	replies []sdk.Message
	err     error
}

// New returns a gateway on opts.Router. Register its handlers with
// HandleSubmissions and HandleDeliveries before the router starts.
func New(opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Gateway{opts: opts, log: opts.Logger, node: uuid.NewString(), waiters: map[string]chan answer{},
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citycard_gateway_submissions_total",
			Help: "Messages plugins submitted to the hub, by plugin, type and outcome (published on a topic, or refused).",
		}, []string{"plugin", "type", "outcome"})}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(g.submissions)
	}
	return g
}

// SetPlugins gives the gateway the plugin host, which is built after it
// (the host needs the gateway's sdk.Hub for each plugin).
func (g *Gateway) SetPlugins(p Plugins) { g.plugins = p }

// handlerName makes a router handler name from parts: at most 64
// characters of a-z0-9_-, stable for the same parts.
func handlerName(parts ...string) string {
	s := strings.NewReplacer(".", "_").Replace(strings.Join(parts, "-"))
	if len(s) <= 64 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:47] + "-" + hex.EncodeToString(sum[:8])
}

// HandleSubmissions registers the hub services' handlers of every hub
// message type on the named plugin's topics.
func (g *Gateway) HandleSubmissions(plugin string) error {
	for typ := range HubTypes {
		topic := bus.Topic(plugin, typ)
		if err := g.opts.Router.Handle(handlerName("svc", plugin, typ), topic, g.serviceHandler(plugin, typ)); err != nil {
			return err
		}
	}
	return nil
}

// HandleDeliveries registers a handler for each message type the plugin
// handles, which hands the hub's messages of that type to it.
func (g *Gateway) HandleDeliveries(plugin string, d sdk.Descriptor) error {
	for _, mt := range d.Handles {
		topic := bus.ServiceTopic("to-"+plugin, mt.Type)
		if err := g.opts.Router.Handle(handlerName("to", plugin, mt.Type), topic, g.deliveryHandler(plugin)); err != nil {
			return err
		}
	}
	return nil
}

// For returns the sdk.Hub the named plugin submits to and queries.
func (g *Gateway) For(plugin string) sdk.Hub { return &pluginHub{g: g, plugin: plugin} }

// wait registers a waiter and returns its id and channel.
func (g *Gateway) wait() (string, chan answer) {
	id := uuid.NewString()
	ch := make(chan answer, 1)
	g.mu.Lock()
	g.waiters[id] = ch
	g.mu.Unlock()
	return id, ch
}

func (g *Gateway) forget(id string) {
	g.mu.Lock()
	delete(g.waiters, id)
	g.mu.Unlock()
}

// resolve hands a to the call waiting under msg's waiter id, if it waits
// on this node. An answer nobody waits for any more (the caller gave up, or
// the message is a replayed dead letter) is dropped: the effect is in the
// ledger and a resubmission with the same key returns it.
func (g *Gateway) resolve(msg *message.Message, a answer) {
	if msg.Metadata.Get(metaNode) != g.node {
		return
	}
	id := msg.Metadata.Get(metaWaiter)
	g.mu.Lock()
	ch := g.waiters[id]
	delete(g.waiters, id)
	g.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

// publish sends m on topic and waits for the answer of its handler, or,
// when stored is set and the bus is durable, for the answer stored in the
// ledger by whichever node handled it.
func (g *Gateway) publish(ctx context.Context, topic string, m sdk.Message, plugin string,
	stored func(context.Context) (answer, bool)) (answer, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return answer{}, sdk.Errorf(sdk.CodeInternal, "encode message %s: %v", m.ID, err)
	}
	id, ch := g.wait()
	defer g.forget(id)
	msg := message.NewMessage(watermill.NewUUID(), body)
	msg.Metadata.Set(metaWaiter, id)
	msg.Metadata.Set(metaNode, g.node)
	if plugin != "" {
		msg.Metadata.Set(metaPlugin, plugin)
	}
	if m.CorrelationID != "" {
		ctx = bus.WithCorrelationID(ctx, m.CorrelationID)
	} else {
		ctx = bus.WithCorrelationID(ctx, m.ID)
	}
	if err := g.opts.Router.Publish(ctx, topic, msg); err != nil {
		if ctx.Err() != nil {
			return answer{}, &sdk.Error{Code: sdk.CodeTimeout, Retryable: true,
				Message: fmt.Sprintf("no answer to message %s before the deadline", m.ID)}
		}
		if errors.Is(err, bus.ErrClosed) || errors.Is(err, bus.ErrNotStarted) {
			return answer{}, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the hub is not routing messages now: " + err.Error()}
		}
		return answer{}, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: err.Error()}
	}
	select {
	case a := <-ch:
		return a, nil
	default:
	}
	if g.opts.Router.InProcess() {
		// In process, Publish returns when the handler is done: no answer
		// means the message went to the dead letters.
		return answer{}, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true,
			Message: fmt.Sprintf("message %s could not be handled and was put in the dead letters", m.ID)}
	}
	// A durable backend may hand the message to another hub node, which
	// cannot answer here; what it committed is in the shared ledger under
	// the message's idempotency key, so look there too.
	var poll <-chan time.Time
	if stored != nil {
		t := time.NewTicker(pollStored)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case a := <-ch:
			return a, nil
		case <-poll:
			if a, ok := stored(ctx); ok {
				return a, nil
			}
		case <-ctx.Done():
			return answer{}, &sdk.Error{Code: sdk.CodeTimeout, Retryable: true,
				Message: fmt.Sprintf("no answer to message %s before the deadline; resend it with the same idempotency key", m.ID)}
		}
	}
}

// pollStored is how often a submission waiting on a durable bus looks for
// its answer in the ledger.
const pollStored = 25 * time.Millisecond

// Send hands m to the named plugin through the router and returns the
// plugin's replies. A plugin that is restarting is retried with backoff; a
// message that fails for good is answered with its error and, if it failed
// for a reason other than the plugin's own answer, kept in the dead letters.
func (g *Gateway) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if g.plugins == nil {
		return nil, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "no plugins are running"}
	}
	d, ok := g.plugins.Describe(plugin)
	if !ok {
		return nil, fault.E(fault.NotFound, "plugin", fmt.Sprintf("no plugin named %q", plugin))
	}
	if !handles(d, m.Type) {
		return nil, &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Field: "/type",
			Message: fmt.Sprintf("plugin %s does not handle message type %q", plugin, m.Type)}
	}
	if m.ID == "" {
		m.ID = sdk.NewID()
	}
	m.Source = sdk.HubSource
	a, err := g.publish(ctx, bus.ServiceTopic("to-"+plugin, m.Type), m, plugin, nil)
	if err != nil {
		return nil, err
	}
	return a.replies, a.err
}

func handles(d sdk.Descriptor, typ string) bool {
	for _, mt := range d.Handles {
		if mt.Type == typ {
			return true
		}
	}
	return false
}

// deliveryHandler hands the hub's messages to plugin. A retryable failure
// (the plugin crashed or is restarting) is returned for the router to
// retry; any other error is the plugin's answer and goes back to the
// sender, except an internal one, which marks a poison message.
func (g *Gateway) deliveryHandler(plugin string) bus.HandlerFunc {
	return func(ctx context.Context, msg *message.Message) error {
		var m sdk.Message
		if err := json.Unmarshal(msg.Payload, &m); err != nil {
			return fmt.Errorf("gateway: undecodable message for %s: %w", plugin, err)
		}
		replies, err := g.plugins.Handle(ctx, plugin, m)
		if err != nil {
			e := sdk.AsError(err)
			if e.Retryable {
				return bus.Retryable(err)
			}
			if e.Code == sdk.CodeInternal {
				return err
			}
		}
		g.resolve(msg, answer{replies: replies, err: err})
		return nil
	}
}

// pluginHub is the sdk.Hub of one plugin.
type pluginHub struct {
	g      *Gateway
	plugin string
}

// check refuses a message the hub's services cannot take: a type no
// service handles, a payload that breaks the hub's schema of its type, a
// write without an idempotency key.
func (h *pluginHub) check(m sdk.Message) error {
	stem, ok := HubTypes[m.Type]
	if !ok {
		return &sdk.Error{Code: sdk.CodeUnsupportedMessageType, Field: "/type",
			Message: fmt.Sprintf("the hub has no service for message type %q; it takes %s", m.Type, strings.Join(hubTypeList(), ", "))}
	}
	// The sdk's hub side has checked the payload against the schema the
	// plugin declared; when that is the hub's own, once is enough.
	if m.SchemaID == stem || m.SchemaID == schemas.BaseURL+stem+".json" {
		if m.IdempotencyKey == "" && m.Type != sdk.TypeCardBalanceInquiry {
			return &sdk.Error{Code: fault.IdempotencyKeyRequired, Field: "/idempotency_key",
				Message: m.Type + " changes the ledger and needs an idempotency key"}
		}
		return nil
	}
	if err := schemas.Validate(stem, m.Payload); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) && len(ve.Violations) > 0 {
			v := ve.Violations[0]
			return &sdk.Error{Code: sdk.CodeSchemaInvalid, Field: "/payload" + v.InstancePath,
				Message: fmt.Sprintf("%s payload breaks schema %s at %q (%s): %s", m.Type, stem, "/payload"+v.InstancePath, v.Keyword, v.Message)}
		}
		return &sdk.Error{Code: sdk.CodeSchemaInvalid, Field: "/payload", Message: fmt.Sprintf("%s payload: %v", m.Type, err)}
	}
	if m.IdempotencyKey == "" && m.Type != sdk.TypeCardBalanceInquiry {
		return &sdk.Error{Code: fault.IdempotencyKeyRequired, Field: "/idempotency_key",
			Message: m.Type + " changes the ledger and needs an idempotency key"}
	}
	return nil
}

// metricType keeps a label from growing without bound: a type the hub does
// not know is counted as "other".
func metricType(t string) string {
	if _, ok := HubTypes[t]; ok {
		return t
	}
	return "other"
}

func hubTypeList() []string {
	out := make([]string, 0, len(HubTypes))
	for t := range HubTypes {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

func (h *pluginHub) Submit(ctx context.Context, m sdk.Message) (sdk.Result, error) {
	if err := h.check(m); err != nil {
		h.g.submissions.WithLabelValues(h.plugin, metricType(m.Type), "refused").Inc()
		return sdk.Result{}, err
	}
	h.g.submissions.WithLabelValues(h.plugin, m.Type, "published").Inc()
	var stored func(context.Context) (answer, bool)
	if m.Type != sdk.TypeTransitTaps {
		// Taps are posted once by (device, seq), not recorded under the
		// message's key, so there is no stored answer to look for.
		stored = h.stored(m)
	}
	a, err := h.g.publish(ctx, bus.Topic(h.plugin, m.Type), m, "", stored)
	if err != nil {
		return sdk.Result{}, err
	}
	if a.err != nil {
		return sdk.Result{}, a.err
	}
	a.result.MessageID = m.ID
	return a.result, nil
}

// stored returns m's answer as the ledger keeps it under its idempotency
// key, once a hub node has committed it.
func (h *pluginHub) stored(m sdk.Message) func(context.Context) (answer, bool) {
	return func(ctx context.Context) (answer, bool) {
		body, ok, err := h.g.opts.Service.Answer(ctx, OperatorPrefix+h.plugin, m.IdempotencyKey)
		if err != nil || !ok {
			return answer{}, false
		}
		// Whether this was the first delivery is known only to the node
		// that applied it.
		return answer{result: sdk.Result{MessageID: m.ID, Body: body}}, true
	}
}

// batchWorkers is how many messages of one batch are in flight at once:
// enough to fill a ledger group commit.
const batchWorkers = 128

// SubmitBatch applies the messages concurrently, so that the ledger writer
// commits them together, and answers each in order. A message the hub
// refuses has its Result.Error set; the others are applied.
func (h *pluginHub) SubmitBatch(ctx context.Context, ms []sdk.Message) ([]sdk.Result, error) {
	out := make([]sdk.Result, len(ms))
	// A few workers, each taking the next message, rather than a goroutine
	// per message: checking a payload needs a deep stack, which a fresh
	// goroutine would grow again every time.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(ms), batchWorkers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ms) {
					return
				}
				r, err := h.Submit(ctx, ms[i])
				if err != nil {
					r = sdk.Result{MessageID: ms[i].ID, Error: sdk.AsError(toSDK(err))}
				}
				out[i] = r
			}
		})
	}
	wg.Wait()
	return out, nil
}

func (h *pluginHub) Query(ctx context.Context, kind, key string) (json.RawMessage, error) {
	switch kind {
	case sdk.QueryDenylistVersion, QueryDenylist:
		if h.g.opts.Transit == nil {
			return nil, &sdk.Error{Code: fault.NotFound, Field: "kind", Message: "this hub runs no transit service"}
		}
		var since int64
		if kind == QueryDenylist && key != "" {
			v, ok := strings.CutPrefix(key, "since:")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil || n < 0 {
				return nil, &sdk.Error{Code: fault.InvalidRequest, Field: "key", Message: fmt.Sprintf(`key %q: want "" or "since:VERSION"`, key)}
			}
			since = n
		}
		v, err := h.g.opts.Transit.DenyList(ctx, since)
		if err != nil {
			return nil, toSDK(err)
		}
		if kind == sdk.QueryDenylistVersion {
			return json.Marshal(map[string]any{"version": v.Version, "size": v.Size})
		}
		return json.Marshal(v)
	case QueryCardBalance:
		c, err := h.g.opts.Service.Get(ctx, key)
		if err != nil {
			return nil, toSDK(err)
		}
		var available int64
		for _, p := range c.Purses {
			available += p.Available
		}
		return json.Marshal(map[string]any{"card": c.Number, "status": c.Status, "currency": c.Currency,
			"balance": c.Balance, "available": available, "purses": c.Purses})
	case sdk.QueryAnswer:
		if key == "" {
			return nil, &sdk.Error{Code: fault.InvalidRequest, Field: "key", Message: "the answer query needs the idempotency key of the write"}
		}
		operator := payments.OperatorPrefix + h.plugin
		a := sdk.Answer{Key: key, State: sdk.AnswerNone}
		body, ok, err := h.g.opts.Service.Answer(ctx, operator, key)
		if err != nil {
			return nil, toSDK(err)
		}
		if ok {
			a.State, a.Body = sdk.AnswerAnswered, body
		} else if pending, err := h.g.opts.Service.Pending(ctx, operator, key); err != nil {
			return nil, toSDK(err)
		} else if pending {
			a.State = sdk.AnswerInProgress
		}
		return json.Marshal(a)
	case sdk.QueryCardStatus:
		c, err := h.g.opts.Service.Get(ctx, key)
		if err != nil {
			return nil, toSDK(err)
		}
		return json.Marshal(map[string]string{"card": c.Number, "status": c.Status, "product": c.Product})
	}
	return nil, &sdk.Error{Code: fault.NotFound, Field: "kind", Message: fmt.Sprintf("the hub answers no query of kind %q", kind)}
}

// serviceHandler applies plugin's messages of type typ with the card
// service. Refusals (an unknown card, a conflicting key) are answers, sent
// back to the plugin; only a failure to reach the ledger is returned for
// the router to retry.
func (g *Gateway) serviceHandler(plugin, typ string) bus.HandlerFunc {
	return func(ctx context.Context, msg *message.Message) error {
		var m sdk.Message
		if err := json.Unmarshal(msg.Payload, &m); err != nil {
			return fmt.Errorf("gateway: undecodable message from %s: %w", plugin, err)
		}
		var out ledger.Outcome
		var err error
		if typ == sdk.TypeTransitTaps {
			out, err = g.taps(ctx, plugin, m)
		} else {
			out, err = g.apply(ctx, plugin, typ, m)
		}
		if err != nil && ledger.IsRetryable(err) {
			return bus.Retryable(err)
		}
		if err != nil {
			g.resolve(msg, answer{err: toSDK(err)})
			return nil
		}
		g.resolve(msg, answer{result: sdk.Result{MessageID: m.ID, Body: out.Body, Duplicate: out.Replayed}})
		return nil
	}
}

// apply has payments apply plugin's message of type typ.
func (g *Gateway) apply(ctx context.Context, plugin, typ string, m sdk.Message) (ledger.Outcome, error) {
	if g.opts.Payments == nil {
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "type", "no service for "+typ)
	}
	return g.opts.Payments.Apply(ctx, plugin, typ, m)
}

// taps posts a transit plugin's taps. Each tap is posted once by its
// (device, seq), so the message needs no idempotency record of its own.
func (g *Gateway) taps(ctx context.Context, plugin string, m sdk.Message) (ledger.Outcome, error) {
	if g.opts.Transit == nil {
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "type", "this hub runs no transit service")
	}
	var p struct {
		Taps []tap.Tap `json:"taps"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.InvalidJSON, err)
	}
	res, err := g.opts.Transit.Taps(ctx, OperatorPrefix+plugin, p.Taps)
	if err != nil {
		return ledger.Outcome{}, err
	}
	body, err := json.Marshal(res)
	if err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.Internal, err)
	}
	return ledger.Outcome{Result: res, Status: 200, Body: body}, nil
}

// toSDK turns a hub error into the plugin protocol's error, keeping its
// registry code, field and whether it may be retried.
func toSDK(err error) error {
	var se *sdk.Error
	if errors.As(err, &se) {
		return se
	}
	code := fault.CodeOf(err)
	var fe *fault.Error
	e := &sdk.Error{Code: code, Message: err.Error(), Retryable: fault.Retryable(code)}
	if errors.As(err, &fe) {
		e.Field = fe.Field
		if fe.Detail != "" {
			e.Message = fe.Detail
		}
	}
	if code == fault.Internal {
		e.Message = "the hub failed to apply the message"
	}
	return e
}
