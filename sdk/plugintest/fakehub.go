package plugintest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk"
)

// FakeHub is an in-memory sdk.Hub for tests. It records what it accepts,
// answers queries from a table, applies each idempotency key once as the
// real hub does, and can be told to fail or to be slow. Behind a Harness,
// every message reaches it through the same checks as the real hub's, so
// a message that breaks its schema never gets here. It is safe for
// concurrent use.
type FakeHub struct {
	mu        sync.Mutex
	submitted []sdk.Message
	seen      map[string]applied
	queries   map[[2]string]json.RawMessage
	fail      error
	delay     time.Duration
	respond   func(sdk.Message) (json.RawMessage, error)
}

// applied remembers what an idempotency key was first used for.
type applied struct {
	typ     string
	payload []byte
	result  sdk.Result
}

// accepted is the answer body when no RespondWith function is set.
var accepted = json.RawMessage(`{"status":"accepted"}`)

// NewFakeHub returns an empty FakeHub that accepts every message.
func NewFakeHub() *FakeHub {
	return &FakeHub{seen: map[string]applied{}, queries: map[[2]string]json.RawMessage{}}
}

// SetQuery makes Query(kind, key) answer with answer, marshalled to JSON
// unless it is a json.RawMessage. Unanswered queries fail with "not_found".
func (f *FakeHub) SetQuery(kind, key string, answer any) {
	body, ok := answer.(json.RawMessage)
	if !ok {
		var err error
		if body, err = json.Marshal(answer); err != nil {
			panic(fmt.Sprintf("plugintest: SetQuery(%s, %s): %v", kind, key, err))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries[[2]string{kind, key}] = body
}

// FailWith makes every later call fail with err, as an outage would;
// FailWith(nil) ends it. Use a *sdk.Error to choose the code the plugin sees.
func (f *FakeHub) FailWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// SetDelay makes every later call take d, or fail with a retryable
// sdk.CodeTimeout when the caller's deadline comes first, to test how a
// plugin copes with a slow hub. SetDelay(0) ends it.
func (f *FakeHub) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// RespondWith sets the answer to each new message: fn returns the body of
// the Result, or an error to refuse the message (a decline, say) without
// recording it. nil restores the default {"status":"accepted"}.
func (f *FakeHub) RespondWith(fn func(sdk.Message) (json.RawMessage, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respond = fn
}

// Submitted returns the messages the hub accepted, in order, each
// idempotency key once: the effects a real hub would have applied.
func (f *FakeHub) Submitted() []sdk.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sdk.Message(nil), f.submitted...)
}

// Submit implements sdk.Hub.
func (f *FakeHub) Submit(ctx context.Context, m sdk.Message) (sdk.Result, error) {
	if err := f.wait(ctx); err != nil {
		return sdk.Result{}, err
	}
	return f.apply(m)
}

// SubmitBatch implements sdk.Hub; each message is applied on its own, so a
// refused one has its Result.Error set and does not stop the others.
func (f *FakeHub) SubmitBatch(ctx context.Context, ms []sdk.Message) ([]sdk.Result, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	out := make([]sdk.Result, len(ms))
	for i, m := range ms {
		r, err := f.apply(m)
		if err != nil {
			r = sdk.Result{MessageID: m.ID, Error: sdk.AsError(err)}
		}
		out[i] = r
	}
	return out, nil
}

// Query implements sdk.Hub from the table set with SetQuery.
func (f *FakeHub) Query(ctx context.Context, kind, key string) (json.RawMessage, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	body, ok := f.queries[[2]string{kind, key}]
	if !ok {
		return nil, sdk.Errorf("not_found", "no answer set for query %s %q", kind, key)
	}
	return body, nil
}

// wait plays out SetDelay and FailWith.
func (f *FakeHub) wait(ctx context.Context) error {
	f.mu.Lock()
	delay, fail := f.delay, f.fail
	f.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return sdk.AsError(ctx.Err())
		}
	}
	return fail
}

// apply records m unless its idempotency key was seen: then the first
// answer is replayed, or, for a different message under the same key,
// refused as the real hub refuses it.
func (f *FakeHub) apply(m sdk.Message) (sdk.Result, error) {
	var payload bytes.Buffer
	if err := json.Compact(&payload, m.Payload); err != nil {
		return sdk.Result{}, sdk.AsError(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.IdempotencyKey != "" {
		if prev, ok := f.seen[m.IdempotencyKey]; ok {
			if prev.typ != m.Type || !bytes.Equal(prev.payload, payload.Bytes()) {
				return sdk.Result{}, &sdk.Error{Code: "idempotency_conflict", Field: "/idempotency_key",
					Message: fmt.Sprintf("idempotency key %q was already used for a different message", m.IdempotencyKey)}
			}
			r := prev.result
			r.MessageID, r.Duplicate = m.ID, true
			return r, nil
		}
	}
	body := accepted
	if f.respond != nil {
		var err error
		if body, err = f.respond(m); err != nil {
			return sdk.Result{}, err
		}
	}
	r := sdk.Result{MessageID: m.ID, Body: body}
	f.submitted = append(f.submitted, m)
	if m.IdempotencyKey != "" {
		f.seen[m.IdempotencyKey] = applied{typ: m.Type, payload: payload.Bytes(), result: r}
	}
	return r, nil
}
