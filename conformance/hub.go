package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// hubMode is how the stand-in hub behaves.
type hubMode int

const (
	hubNormal  hubMode = iota
	hubSlow            // every call waits until the caller gives up
	hubFailing         // every call fails with a retryable error
)

// hub is the kit's stand-in for the hub, served to the plugin through
// go-plugin's broker. Unlike pluginwire.Client's Hub service it judges every
// message itself and records it, valid or not, so the checks can say what
// the plugin sent, when, and with what deadline. It applies each
// idempotency key once, as the real hub does, and answers the hub's own
// message types plausibly.
type hub struct {
	pluginv1.UnimplementedHubServer

	answers HubAnswers
	slowCap time.Duration // the longest a slow call is held

	mu       sync.Mutex
	val      pluginwire.Validator
	phase    string
	mode     hubMode
	failCode string
	events   []*hubEvent
	seen     map[string]applied
	seq      int
	inFlight sync.WaitGroup
}

// applied is what an idempotency key was first used for.
type applied struct {
	typ     string
	payload []byte
	body    json.RawMessage
	id      int
}

// hubEvent is one call the plugin made to the hub.
type hubEvent struct {
	phase       string
	op          string // "submit", "batch" or "query"
	msgs        []sdk.Message
	kind, key   string // of a query
	invalid     *sdk.Error
	effects     int // messages applied for the first time
	noKey       int // of those, how many had no idempotency key
	hasDeadline bool
	deadline    time.Time
	start, end  time.Time
	done        bool
}

func newHub(answers HubAnswers, slowCap time.Duration) *hub {
	return &hub{answers: answers, slowCap: slowCap, seen: map[string]applied{}}
}

// setValidator sets the plugin's Descriptor to judge messages by.
func (h *hub) setValidator(v pluginwire.Validator) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.val = v
}

// setPhase tags the calls that start from now on with the check's id.
func (h *hub) setPhase(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.phase = id
}

// setMode makes the hub normal, slow or failing with code.
func (h *hub) setMode(m hubMode, code string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode, h.failCode = m, code
}

// eventsOf returns copies of the events of a phase.
func (h *hub) eventsOf(phase string) []hubEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hubEvent
	for _, e := range h.events {
		if e.phase == phase {
			out = append(out, *e)
		}
	}
	return out
}

// wait waits until no call is in flight, for at most d.
func (h *hub) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		h.inFlight.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (h *hub) begin(ctx context.Context, op string, ms []sdk.Message, kind, key string) *hubEvent {
	h.inFlight.Add(1)
	ev := &hubEvent{op: op, msgs: ms, kind: kind, key: key, start: time.Now()}
	ev.deadline, ev.hasDeadline = ctx.Deadline()
	h.mu.Lock()
	ev.phase = h.phase
	h.events = append(h.events, ev)
	h.mu.Unlock()
	return ev
}

func (h *hub) finish(ev *hubEvent) {
	h.mu.Lock()
	ev.end, ev.done = time.Now(), true
	h.mu.Unlock()
	h.inFlight.Done()
}

// check judges a message from the plugin against its Descriptor.
func (h *hub) check(m sdk.Message) *sdk.Error {
	h.mu.Lock()
	v := h.val
	h.mu.Unlock()
	if v == nil {
		return &sdk.Error{Code: sdk.CodeInternal, Message: "the conformance kit has no descriptor to check messages against"}
	}
	return sdk.AsError(v.CheckSent(m))
}

// stall plays out the slow and failing modes.
func (h *hub) stall(ctx context.Context) *sdk.Error {
	h.mu.Lock()
	mode, code := h.mode, h.failCode
	h.mu.Unlock()
	switch mode {
	case hubSlow:
		t := time.NewTimer(h.slowCap)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return &sdk.Error{Code: sdk.CodeTimeout, Retryable: true, Message: "the hub did not answer in time"}
		case <-t.C:
			return &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the hub did not answer in time"}
		}
	case hubFailing:
		return &sdk.Error{Code: code, Retryable: true, Message: "the hub cannot take the request now (conformance kit: failing hub)"}
	}
	return nil
}

func (h *hub) Submit(ctx context.Context, e *pluginv1.Envelope) (*pluginv1.SubmitResponse, error) {
	m := pluginwire.FromEnvelope(e)
	ev := h.begin(ctx, "submit", []sdk.Message{m}, "", "")
	defer h.finish(ev)
	if err := h.check(m); err != nil {
		h.mu.Lock()
		ev.invalid = err
		h.mu.Unlock()
		return &pluginv1.SubmitResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	if err := h.stall(ctx); err != nil {
		return &pluginv1.SubmitResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	body, dup, err := h.apply(ev, m)
	if err != nil {
		return &pluginv1.SubmitResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	return &pluginv1.SubmitResponse{Result: &pluginv1.Result{MessageId: m.ID, Body: body, Duplicate: dup}}, nil
}

func (h *hub) SubmitBatch(ctx context.Context, b *pluginv1.Batch) (*pluginv1.BatchResponse, error) {
	ms := pluginwire.FromEnvelopes(b.GetMessages())
	ev := h.begin(ctx, "batch", ms, "", "")
	defer h.finish(ev)
	if len(ms) > sdk.MaxBatch {
		err := sdk.Errorf(sdk.CodeInvalidRequest, "a batch holds at most %d messages, not %d", sdk.MaxBatch, len(ms))
		h.mu.Lock()
		ev.invalid = err
		h.mu.Unlock()
		return &pluginv1.BatchResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	for i, m := range ms {
		if err := h.check(m); err != nil {
			err = &sdk.Error{Code: err.Code, Field: fmt.Sprintf("/%d%s", i, err.Field), Message: fmt.Sprintf("message %d: %s", i, err.Message)}
			h.mu.Lock()
			ev.invalid = err
			h.mu.Unlock()
			return &pluginv1.BatchResponse{Error: pluginwire.ToWireError(err)}, nil
		}
	}
	if err := h.stall(ctx); err != nil {
		return &pluginv1.BatchResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	out := make([]*pluginv1.SubmitResponse, len(ms))
	for i, m := range ms {
		body, dup, err := h.apply(ev, m)
		if err != nil {
			out[i] = &pluginv1.SubmitResponse{Error: pluginwire.ToWireError(err)}
			continue
		}
		out[i] = &pluginv1.SubmitResponse{Result: &pluginv1.Result{MessageId: m.ID, Body: body, Duplicate: dup}}
	}
	return &pluginv1.BatchResponse{Results: out}, nil
}

var cardNumber = regexp.MustCompile(`^[0-9]{16,19}$`)

func (h *hub) Query(ctx context.Context, q *pluginv1.QueryRequest) (*pluginv1.QueryResponse, error) {
	ev := h.begin(ctx, "query", nil, q.GetKind(), q.GetKey())
	defer h.finish(ev)
	if err := h.stall(ctx); err != nil {
		return &pluginv1.QueryResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	for _, a := range h.answers.Queries {
		if a.Kind == q.GetKind() && (a.Key == "" || a.Key == q.GetKey()) {
			return &pluginv1.QueryResponse{Body: a.Answer}, nil
		}
	}
	var body any
	switch q.GetKind() {
	case sdk.QueryCardStatus:
		if !cardNumber.MatchString(q.GetKey()) {
			return &pluginv1.QueryResponse{Error: pluginwire.ToWireError(sdk.Errorf("card_not_found", "no card %q", q.GetKey()))}, nil
		}
		body = map[string]any{"card": q.GetKey(), "status": "active", "product": "standard"}
	case sdk.QueryDenylistVersion:
		body = map[string]any{"version": 1}
	default:
		return &pluginv1.QueryResponse{Error: pluginwire.ToWireError(sdk.Errorf("not_found", "the hub answers no query of kind %q", q.GetKind()))}, nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return &pluginv1.QueryResponse{Error: pluginwire.ToWireError(err)}, nil
	}
	return &pluginv1.QueryResponse{Body: b}, nil
}

// apply applies m once per idempotency key: a repeat is answered with the
// first answer, a different message under a used key is refused.
func (h *hub) apply(ev *hubEvent, m sdk.Message) (json.RawMessage, bool, *sdk.Error) {
	var payload bytes.Buffer
	if err := json.Compact(&payload, m.Payload); err != nil {
		return nil, false, sdk.AsError(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.IdempotencyKey != "" {
		if prev, ok := h.seen[m.IdempotencyKey]; ok {
			if prev.typ != m.Type || !bytes.Equal(prev.payload, payload.Bytes()) {
				return nil, false, &sdk.Error{Code: "idempotency_conflict", Field: "/idempotency_key",
					Message: fmt.Sprintf("idempotency key %q was already used for a different message", m.IdempotencyKey)}
			}
			return prev.body, true, nil
		}
	}
	h.seq++
	body, err := h.answer(m, h.seq)
	if err != nil {
		return nil, false, err
	}
	ev.effects++
	if m.IdempotencyKey == "" {
		ev.noKey++
	} else {
		h.seen[m.IdempotencyKey] = applied{typ: m.Type, payload: payload.Bytes(), body: body, id: h.seq}
	}
	return body, false, nil
}

// answer is the body of the hub's answer to a new message: the canned one
// from the conformance file, else what the hub answers for its own types,
// else {"status":"accepted"}. Called with h.mu held.
func (h *hub) answer(m sdk.Message, id int) (json.RawMessage, *sdk.Error) {
	if body, ok := h.answers.Answers[m.Type]; ok {
		return body, nil
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var body map[string]any
	switch m.Type {
	case "card.payment.v1":
		var p struct {
			Card     string `json:"card"`
			Merchant string `json:"merchant"`
			Terminal string `json:"terminal"`
			Amount   int64  `json:"amount"`
			Currency string `json:"currency"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, sdk.AsError(err)
		}
		body = map[string]any{"id": strconv.Itoa(id), "status": "approved", "card": p.Card, "channel": "conformance",
			"merchant": p.Merchant, "amount": p.Amount, "currency": p.Currency,
			"legs": []map[string]any{{"purse": "cash", "amount": p.Amount}}, "balance": 500000 - p.Amount, "at": now}
		if p.Terminal != "" {
			body["terminal"] = p.Terminal
		}
	case "card.reversal.v1":
		var p struct {
			PaymentKey string `json:"payment_key"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, sdk.AsError(err)
		}
		paid, ok := h.seen[p.PaymentKey]
		if !ok || paid.typ != "card.payment.v1" {
			return nil, sdk.Errorf("transfer_not_found", "no payment with idempotency key %q", p.PaymentKey)
		}
		var orig struct {
			Amount   int64  `json:"amount"`
			Currency string `json:"currency"`
			Card     string `json:"card"`
		}
		_ = json.Unmarshal(paid.body, &orig)
		body = map[string]any{"id": strconv.Itoa(id), "reverses": strconv.Itoa(paid.id), "kind": "reversal",
			"card": orig.Card, "amount": orig.Amount, "currency": orig.Currency, "at": now}
	default:
		body = map[string]any{"status": "accepted"}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, sdk.AsError(err)
	}
	return b, nil
}
