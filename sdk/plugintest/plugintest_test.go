package plugintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// probe is a plugin driven by its messages: each "probe.do.v1" says what to
// do, so one plugin can exercise every path of the sdk.
type probe struct {
	mu        sync.Mutex
	hub       sdk.Hub
	refuse    bool // refuse the next configuration
	stopped   atomic.Int32
	unhealthy error
}

type command struct {
	Op    string          `json:"op"`
	N     int             `json:"n,omitempty"`
	Key   string          `json:"key,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

func (p *probe) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "probe",
		Version: "0.0.1",
		Handles: []sdk.MessageType{{Type: "probe.do.v1", SchemaID: "https://probe.example/do.json", Schema: json.RawMessage(`{
			"type": "object", "required": ["op"],
			"properties": {
				"op": {"enum": ["reply", "submit", "submit_bad", "submit_undeclared", "batch", "batch_bad", "query", "panic", "fail", "plain_fail", "correlation"]},
				"n": {"type": "integer"}, "key": {"type": "string"}, "value": {}
			},
			"additionalProperties": false}`)}},
		Sends: []sdk.MessageType{{Type: "probe.event.v1", SchemaID: "https://probe.example/event.json", Schema: json.RawMessage(`{
			"type": "object", "required": ["n"],
			"properties": {"n": {"type": "integer", "minimum": 0}, "value": {}},
			"additionalProperties": false}`)}},
		ConfigSchema: json.RawMessage(`{"type": "object", "properties": {"label": {"type": "string", "maxLength": 8}}, "additionalProperties": false}`),
	}
}

func (p *probe) Configure(_ context.Context, cfg json.RawMessage, hub sdk.Hub) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse {
		return errors.New("the partner host refused our credentials")
	}
	p.hub = hub
	return nil
}

func event(n int) sdk.Message {
	return sdk.Message{Type: "probe.event.v1", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

func (p *probe) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	var c command
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		return nil, err
	}
	p.mu.Lock()
	hub := p.hub
	p.mu.Unlock()
	switch c.Op {
	case "reply":
		return []sdk.Message{event(c.N)}, nil
	case "submit":
		e := event(c.N)
		e.IdempotencyKey = c.Key
		r, err := hub.Submit(ctx, e)
		if err != nil {
			return nil, err
		}
		return []sdk.Message{{Type: "probe.event.v1", Payload: json.RawMessage(fmt.Sprintf(`{"n":0,"value":{"dup":%v,"body":%s}}`, r.Duplicate, r.Body))}}, nil
	case "submit_bad":
		_, err := hub.Submit(ctx, event(-1))
		return nil, err
	case "submit_undeclared":
		_, err := hub.Submit(ctx, sdk.Message{Type: "probe.secret.v1", Payload: json.RawMessage(`{}`)})
		return nil, err
	case "batch", "batch_bad":
		ms := make([]sdk.Message, c.N)
		for i := range ms {
			ms[i] = event(i)
			ms[i].IdempotencyKey = fmt.Sprintf("%s-%d", c.Key, i)
		}
		if c.Op == "batch_bad" {
			ms[len(ms)-1] = event(-1)
		}
		rs, err := hub.SubmitBatch(ctx, ms)
		if err != nil {
			return nil, err
		}
		refused := 0
		for _, r := range rs {
			if r.Error != nil {
				refused++
			}
		}
		return []sdk.Message{event(refused)}, nil
	case "query":
		body, err := hub.Query(ctx, sdk.QueryCardStatus, c.Key)
		if err != nil {
			return nil, err
		}
		return []sdk.Message{{Type: "probe.event.v1", Payload: json.RawMessage(fmt.Sprintf(`{"n":0,"value":%s}`, body))}}, nil
	case "panic":
		panic("poison message")
	case "fail":
		return nil, &sdk.Error{Code: "card_lost", Message: "reported lost", Field: "/payload/card"}
	case "plain_fail":
		return nil, errors.New("something broke")
	case "correlation":
		// The correlation id reaches the plugin's context, for its logs.
		return []sdk.Message{{Type: "probe.event.v1", Payload: json.RawMessage(`{"n":0,"value":"` + sdk.CorrelationID(ctx) + `"}`)}}, nil
	}
	return nil, fmt.Errorf("unknown op %s", c.Op)
}

func (p *probe) Health(context.Context) error { return p.unhealthy }

func (p *probe) Stop(context.Context) error {
	p.stopped.Add(1)
	return nil
}

func do(op string, fields ...any) sdk.Message {
	c := map[string]any{"op": op}
	for i := 0; i+1 < len(fields); i += 2 {
		c[fields[i].(string)] = fields[i+1]
	}
	return plugintest.NewMessage("probe.do.v1", c)
}

func wantCode(t *testing.T, err error, code, field string) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *sdk.Error %s", err, err, code)
	}
	if e.Code != code || e.Field != field {
		t.Fatalf("got %s at %q (%s), want %s at %q", e.Code, e.Field, e.Message, code, field)
	}
	return e
}

func configured(t *testing.T, opts ...plugintest.Option) (*plugintest.Harness, *probe) {
	t.Helper()
	p := &probe{}
	h := plugintest.Start(t, p, opts...)
	if err := h.Configure(nil); err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestDescribe(t *testing.T) {
	h := plugintest.Start(t, &probe{})
	d := h.Describe()
	if d.Name != "probe" || len(d.ProtocolVersions) != 1 || d.ProtocolVersions[0] != sdk.ProtocolVersion || len(d.Handles) != 1 {
		t.Errorf("descriptor = %+v", d)
	}
}

func TestConfigure(t *testing.T) {
	p := &probe{}
	h := plugintest.Start(t, p)
	_, err := h.Handle(do("reply"))
	wantCode(t, err, sdk.CodeNotConfigured, "")
	if err := h.Health(); err == nil {
		t.Error("unconfigured plugin is healthy")
	}

	wantCode(t, h.Configure(map[string]any{"label": "much too long"}), sdk.CodeConfigInvalid, "/label")
	wantCode(t, h.Configure(json.RawMessage(`{"lable":"x"}`)), sdk.CodeConfigInvalid, "/lable")
	p.refuse = true
	e := wantCode(t, h.Configure(map[string]any{"label": "x"}), sdk.CodeConfigInvalid, "")
	if !strings.Contains(e.Message, "refused our credentials") {
		t.Errorf("the plugin's reason is lost: %q", e.Message)
	}
	p.refuse = false
	if err := h.Configure([]byte(`{"label":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.Health(); err != nil {
		t.Errorf("health: %v", err)
	}
	p.unhealthy = errors.New("partner host down")
	if err := h.Health(); !errors.Is(err, &sdk.Error{Code: sdk.CodeUnavailable}) || !strings.Contains(err.Error(), "partner host down") {
		t.Errorf("health: %v", err)
	}
}

func TestHandleFillsReplies(t *testing.T) {
	h, _ := configured(t)
	in := do("reply", "n", 7)
	in.ID, in.CorrelationID = "in-1", "story-1"
	replies, err := h.Handle(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 {
		t.Fatalf("replies = %+v", replies)
	}
	r := replies[0]
	if r.ID == "" || r.Source != "probe" || r.SchemaID != "https://probe.example/event.json" || r.CorrelationID != "story-1" ||
		time.Since(r.CreatedAt) > time.Minute || string(r.Payload) != `{"n":7}` {
		t.Errorf("reply = %+v", r)
	}
	// Without a correlation id, the hub's message starts the story.
	in = do("correlation")
	in.ID = "in-2"
	replies, err = h.Handle(in)
	if err != nil {
		t.Fatal(err)
	}
	if replies[0].CorrelationID != "in-2" || !strings.Contains(string(replies[0].Payload), `"in-2"`) {
		t.Errorf("reply = %+v %s", replies[0], replies[0].Payload)
	}
}

func TestSubmit(t *testing.T) {
	h, _ := configured(t)
	in := do("submit", "n", 3, "key", "k-1")
	in.CorrelationID = "story-2"
	if _, err := h.Handle(in); err != nil {
		t.Fatal(err)
	}
	got := h.Submitted()
	if len(got) != 1 || got[0].Source != "probe" || got[0].CorrelationID != "story-2" || got[0].IdempotencyKey != "k-1" || string(got[0].Payload) != `{"n":3}` {
		t.Fatalf("submitted = %+v", got)
	}

	// The same key again: one effect, the first answer replayed.
	replies, err := h.Handle(do("submit", "n", 3, "key", "k-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Submitted()) != 1 || !strings.Contains(string(replies[0].Payload), `"dup":true`) {
		t.Errorf("duplicate: submitted %d, reply %s", len(h.Submitted()), replies[0].Payload)
	}
	// The same key for something else is refused.
	_, err = h.Handle(do("submit", "n", 4, "key", "k-1"))
	wantCode(t, err, "idempotency_conflict", "/idempotency_key")

	h.Hub().RespondWith(func(m sdk.Message) (json.RawMessage, error) { return json.RawMessage(`{"status":"approved"}`), nil })
	replies, err = h.Handle(do("submit", "n", 5, "key", "k-2"))
	if err != nil || !strings.Contains(string(replies[0].Payload), `"approved"`) {
		t.Errorf("RespondWith: %v %s", err, replies)
	}
}

func TestInvalidOutgoingNeverReachesHub(t *testing.T) {
	h, _ := configured(t)
	_, err := h.Handle(do("submit_bad"))
	e := wantCode(t, err, sdk.CodeSchemaInvalid, "/payload/n")
	if !strings.Contains(e.Message, "minimum") {
		t.Errorf("message %q does not name the keyword", e.Message)
	}
	_, err = h.Handle(do("submit_undeclared"))
	wantCode(t, err, sdk.CodeSchemaInvalid, "/type")
	_, err = h.Handle(do("batch_bad", "n", 3, "key", "b"))
	wantCode(t, err, sdk.CodeSchemaInvalid, "/2/payload/n")
	if got := h.Submitted(); len(got) != 0 {
		t.Errorf("hub got %+v", got)
	}
	// An invalid message from the hub never reaches the plugin.
	_, err = h.Handle(plugintest.NewMessage("probe.do.v1", map[string]any{"op": "explode"}))
	wantCode(t, err, sdk.CodeSchemaInvalid, "/payload/op")
	_, err = h.Handle(plugintest.NewMessage("probe.undo.v1", map[string]any{}))
	wantCode(t, err, sdk.CodeUnsupportedMessageType, "/type")
}

func TestBatch(t *testing.T) {
	h, _ := configured(t)
	if _, err := h.Handle(do("batch", "n", 250, "key", "a")); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Submitted()); n != 250 {
		t.Fatalf("hub got %d, want 250", n)
	}
	// Re-sent after a lost answer: nothing new is applied.
	replies, err := h.Handle(do("batch", "n", 250, "key", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Submitted()); n != 250 || string(replies[0].Payload) != `{"n":0}` {
		t.Errorf("resent batch: hub has %d, reply %s", n, replies[0].Payload)
	}
	// A refusal of one message is reported for that message only.
	h.Hub().RespondWith(func(m sdk.Message) (json.RawMessage, error) {
		if strings.HasSuffix(m.IdempotencyKey, "-1") {
			return nil, &sdk.Error{Code: "card_frozen"}
		}
		return json.RawMessage(`{}`), nil
	})
	replies, err = h.Handle(do("batch", "n", 3, "key", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if string(replies[0].Payload) != `{"n":1}` || len(h.Submitted()) != 252 {
		t.Errorf("reply %s, hub has %d", replies[0].Payload, len(h.Submitted()))
	}
	_, err = h.Handle(do("batch", "n", sdk.MaxBatch+1, "key", "c"))
	wantCode(t, err, sdk.CodeInvalidRequest, "")
}

func TestQuery(t *testing.T) {
	h, _ := configured(t)
	h.Hub().SetQuery(sdk.QueryCardStatus, "886", map[string]string{"status": "active"})
	replies, err := h.Handle(do("query", "key", "886"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(replies[0].Payload); got != `{"n":0,"value":{"status":"active"}}` {
		t.Errorf("reply %s", got)
	}
	_, err = h.Handle(do("query", "key", "999"))
	wantCode(t, err, "not_found", "")
}

func TestErrorsCrossBothWays(t *testing.T) {
	h, _ := configured(t)
	_, err := h.Handle(do("fail"))
	wantCode(t, err, "card_lost", "/payload/card")
	_, err = h.Handle(do("plain_fail"))
	e := wantCode(t, err, sdk.CodeInternal, "")
	if !strings.Contains(e.Message, "something broke") {
		t.Errorf("message %q", e.Message)
	}
	// The hub's error reaches the plugin and comes back to the hub intact.
	h.Hub().FailWith(&sdk.Error{Code: "unavailable", Message: "ledger paused", Retryable: true})
	_, err = h.Handle(do("submit", "n", 1))
	if e := wantCode(t, err, "unavailable", ""); !e.Retryable || e.Message != "ledger paused" {
		t.Errorf("got %+v", e)
	}
	h.Hub().FailWith(nil)
	if _, err := h.Handle(do("submit", "n", 1)); err != nil {
		t.Errorf("after FailWith(nil): %v", err)
	}
}

func TestPanicIsAnsweredNotFatal(t *testing.T) {
	h, _ := configured(t)
	_, err := h.Handle(do("panic"))
	e := wantCode(t, err, sdk.CodeInternal, "")
	if !strings.Contains(e.Message, "poison message") {
		t.Errorf("message %q", e.Message)
	}
	if _, err := h.Handle(do("reply")); err != nil {
		t.Errorf("after a panic: %v", err)
	}
}

func TestSlowHubTimesOut(t *testing.T) {
	h, _ := configured(t, plugintest.WithTimeout(300*time.Millisecond))
	h.Hub().SetDelay(5 * time.Second)
	start := time.Now()
	_, err := h.Handle(do("submit", "n", 1))
	if e := wantCode(t, err, sdk.CodeTimeout, ""); !e.Retryable {
		t.Error("timeout not retryable")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	h.Hub().SetDelay(0)
	if len(h.Submitted()) != 0 {
		t.Error("a timed-out submission was applied")
	}
}

func TestReconfigureKeepsHubWorking(t *testing.T) {
	hub := plugintest.NewFakeHub()
	h, _ := configured(t, plugintest.WithHub(hub))
	for i := range 3 {
		if err := h.Configure(map[string]any{"label": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Handle(do("submit", "n", i)); err != nil {
			t.Fatalf("after reconfiguration %d: %v", i, err)
		}
	}
	if h.Hub() != hub || len(hub.Submitted()) != 3 {
		t.Errorf("hub got %d", len(hub.Submitted()))
	}
}

func TestConcurrentHandle(t *testing.T) {
	h, _ := configured(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Handle(do("submit", "n", i, "key", fmt.Sprint("c-", i))); err != nil {
				errs <- err
			}
		}()
		if i%8 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.Configure(nil); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(h.Submitted()); n != 32 {
		t.Errorf("hub got %d, want 32", n)
	}
}

func TestCloseStopsPlugin(t *testing.T) {
	p := &probe{}
	h, err := plugintest.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Configure(nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if p.stopped.Load() != 1 {
		t.Errorf("Stop called %d times", p.stopped.Load())
	}
}

type badName struct{ *probe }

func (badName) Describe() sdk.Descriptor { return sdk.Descriptor{Name: "Bad Name", Version: "1.0.0"} }

func TestNewRefusesBadDescriptor(t *testing.T) {
	_, err := plugintest.New(badName{&probe{}})
	wantCode(t, err, sdk.CodeDescriptorInvalid, "/name")
}
