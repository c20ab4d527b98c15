package pluginwire

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// These tests run sdk/examples/parking as a real child process, launched
// the way the hub's plugin host launches plugins: checksum, AutoMTLS, gRPC.

// exampleBuilds holds the example binaries, built once per test run.
type exampleBuilds struct {
	mu   sync.Mutex
	dir  string
	bins map[string][]byte // path → sha256
}

var builds = &exampleBuilds{bins: map[string][]byte{}}

func (b *exampleBuilds) cleanup() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// exampleBinary builds sdk/examples/<name> and returns its path and sum.
func exampleBinary(t testing.TB, name string) (string, []byte) {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "citycard-sdk-test-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir = dir
	}
	path := filepath.Join(builds.dir, name)
	if sum, ok := builds.bins[path]; ok {
		return path, sum
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example plugin")
	}
	out, err := exec.Command(goTool, "build", "-o", path, "../../sdk/examples/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("building sdk/examples/%s: %v\n%s", name, err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	builds.bins[path] = h.Sum(nil)
	return path, builds.bins[path]
}

// launch starts the parking plugin and stops it when the test ends.
func launch(t testing.TB) (*Client, *plugin.Client) {
	t.Helper()
	path, sum := exampleBinary(t, "parking")
	pc := plugin.NewClient(ClientConfig(exec.Command(path), sum))
	c, err := Dispense(pc)
	if err != nil {
		pc.Kill()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(ctx) // fails, as it should, after the crash test's kill
		pc.Kill()
	})
	return c, pc
}

// recordingHub is the test's stand-in for the hub's services.
type recordingHub struct {
	mu      sync.Mutex
	got     []sdk.Message
	queries []string
	cards   map[string]string // card → status
	delay   time.Duration
	discard bool // for benchmarks: count, do not keep
	count   int
}

func (h *recordingHub) record(ctx context.Context, ms ...sdk.Message) error {
	if h.delay > 0 {
		select {
		case <-time.After(h.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count += len(ms)
	if !h.discard {
		h.got = append(h.got, ms...)
	}
	return nil
}

func (h *recordingHub) Submit(ctx context.Context, m sdk.Message) (sdk.Result, error) {
	if err := h.record(ctx, m); err != nil {
		return sdk.Result{}, err
	}
	return sdk.Result{Body: json.RawMessage(`{"status":"charged"}`)}, nil
}

func (h *recordingHub) SubmitBatch(ctx context.Context, ms []sdk.Message) ([]sdk.Result, error) {
	if err := h.record(ctx, ms...); err != nil {
		return nil, err
	}
	out := make([]sdk.Result, len(ms))
	for i := range ms {
		out[i] = sdk.Result{Body: json.RawMessage(`{"status":"charged"}`)}
	}
	return out, nil
}

func (h *recordingHub) Query(ctx context.Context, kind, key string) (json.RawMessage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queries = append(h.queries, kind+" "+key)
	status, ok := h.cards[key]
	if kind != sdk.QueryCardStatus || !ok {
		return nil, sdk.Errorf("card_not_found", "no card %s", key)
	}
	return json.Marshal(map[string]string{"status": status})
}

func (h *recordingHub) messages() []sdk.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sdk.Message(nil), h.got...)
}

const card = "8860001234567890"

var meterConfig = json.RawMessage(`{"zone":"old-town","rate_per_hour":400,"check_card_status":true}`)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func payload(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantCode(t *testing.T, err error, code, field string) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *sdk.Error %s", err, err, code)
	}
	if e.Code != code || (field != "" && e.Field != field) {
		t.Fatalf("got %s at %q (%s), want %s at %q", e.Code, e.Field, e.Message, code, field)
	}
	return e
}

func TestProcessDescribeConfigureHandle(t *testing.T) {
	c, _ := launch(t)
	ctx := ctxT(t)
	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "parking" || len(d.ProtocolVersions) != 1 || d.ProtocolVersions[0] != sdk.ProtocolVersion {
		t.Fatalf("descriptor = %s %v", d.Name, d.ProtocolVersions)
	}
	if err := c.Health(ctx); err == nil {
		t.Error("an unconfigured plugin reports healthy")
	}
	hub := &recordingHub{cards: map[string]string{card: "active"}}
	if err := c.Configure(ctx, meterConfig, hub); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("health: %v", err)
	}

	in := sdk.Message{Type: "parking.session.end.v1", CorrelationID: "corr-1",
		Payload: payload(t, map[string]any{"session": "s-1", "card": card, "minutes": 61})}
	replies, err := c.Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != "parking.receipt.v1" || replies[0].Source != "parking" || replies[0].CorrelationID != "corr-1" {
		t.Fatalf("replies = %+v", replies)
	}
	var receipt struct {
		Amount int64           `json:"amount"`
		Hub    json.RawMessage `json:"hub"`
	}
	if err := json.Unmarshal(replies[0].Payload, &receipt); err != nil {
		t.Fatal(err)
	}
	if receipt.Amount != 800 || string(receipt.Hub) != `{"status":"charged"}` {
		t.Errorf("receipt = %s", replies[0].Payload)
	}

	got := hub.messages()
	if len(got) != 1 {
		t.Fatalf("hub got %d messages, want 1", len(got))
	}
	fee := got[0]
	if fee.Type != "parking.fee.v1" || fee.Source != "parking" || fee.CorrelationID != "corr-1" ||
		fee.IdempotencyKey != "parking-old-town-s-1" || fee.SchemaID != "https://parking.example/schemas/parking.fee.v1.json" ||
		fee.ID == "" || fee.CreatedAt.IsZero() {
		t.Errorf("fee envelope = %+v", fee)
	}
	if !strings.Contains(string(fee.Payload), `"amount":800`) {
		t.Errorf("fee payload = %s", fee.Payload)
	}
	if len(hub.queries) != 1 || hub.queries[0] != "card_status "+card {
		t.Errorf("queries = %v", hub.queries)
	}
}

func TestProcessHubErrorsCrossIntact(t *testing.T) {
	c, _ := launch(t)
	ctx := ctxT(t)
	hub := &recordingHub{cards: map[string]string{card: "frozen"}}
	if err := c.Configure(ctx, meterConfig, hub); err != nil {
		t.Fatal(err)
	}
	// The plugin's own domain error.
	_, err := c.Handle(ctx, sdk.Message{Type: "parking.session.end.v1",
		Payload: payload(t, map[string]any{"session": "s-2", "card": card, "minutes": 5})})
	wantCode(t, err, "card_not_active", "")
	// The hub's error, passed through the plugin unchanged: two crossings.
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.session.end.v1",
		Payload: payload(t, map[string]any{"session": "s-3", "card": "8860009999999999", "minutes": 5})})
	wantCode(t, err, "card_not_found", "")
}

func TestProcessBadConfigRefused(t *testing.T) {
	c, _ := launch(t)
	ctx := ctxT(t)
	bad := json.RawMessage(`{"zone":"Old Town","rate_per_hour":400}`)

	// The hub's side refuses it without bothering the plugin…
	e := wantCode(t, c.Configure(ctx, bad, &recordingHub{}), sdk.CodeConfigInvalid, "/zone")
	if !strings.Contains(e.Message, "pattern") {
		t.Errorf("message %q does not name the keyword", e.Message)
	}
	// …and the plugin's side refuses it too when a hub does not check.
	resp, err := c.rpc.Configure(ctx, &pluginv1.ConfigureRequest{Config: bad})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, fromWireError(resp.GetError()), sdk.CodeConfigInvalid, "/zone")

	wantCode(t, c.Configure(ctx, json.RawMessage(`{"zone":"a","rate_per_hour":1,"colour":"red"}`), nil), sdk.CodeConfigInvalid, "/colour")
	wantCode(t, c.Configure(ctx, nil, nil), sdk.CodeConfigInvalid, "")
	// Refused configurations leave the plugin unconfigured.
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.quote.v1", Payload: json.RawMessage(`{"minutes":1}`)})
	wantCode(t, err, sdk.CodeNotConfigured, "")
}

func TestProcessInvalidMessageNeverLeavesPlugin(t *testing.T) {
	c, _ := launch(t)
	ctx := ctxT(t)
	hub := &recordingHub{}
	if err := c.Configure(ctx, json.RawMessage(`{"zone":"old-town","rate_per_hour":400}`), hub); err != nil {
		t.Fatal(err)
	}
	// The meter accepts what the card reader said; the fee's schema does not.
	_, err := c.Handle(ctx, sdk.Message{Type: "parking.session.end.v1",
		Payload: payload(t, map[string]any{"session": "s-4", "card": "12AB", "minutes": 30})})
	e := wantCode(t, err, sdk.CodeSchemaInvalid, "/payload/card")
	if !strings.Contains(e.Message, "pattern") {
		t.Errorf("message %q does not name the keyword", e.Message)
	}
	// One bad message refuses the whole batch, before the wire.
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.session.batch.v1", Payload: payload(t, map[string]any{"sessions": []any{
		map[string]any{"session": "s-5", "card": card, "minutes": 30},
		map[string]any{"session": "s-6", "card": "12AB", "minutes": 30},
	}})})
	wantCode(t, err, sdk.CodeSchemaInvalid, "/1/payload/card")
	if n := c.hubCalls.Load(); n != 0 {
		t.Errorf("%d calls reached the hub's side", n)
	}
	if got := hub.messages(); len(got) != 0 {
		t.Errorf("hub got %d messages", len(got))
	}

	// The hub refuses what breaks the schema on its way in, too.
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.quote.v1", Payload: json.RawMessage(`{"minutes":-1}`)})
	wantCode(t, err, sdk.CodeSchemaInvalid, "/payload/minutes")
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.refund.v1", Payload: json.RawMessage(`{}`)})
	wantCode(t, err, sdk.CodeUnsupportedMessage, "/type")

	// A good batch goes through in one call.
	replies, err := c.Handle(ctx, sdk.Message{Type: "parking.session.batch.v1", Payload: payload(t, map[string]any{"sessions": []any{
		map[string]any{"session": "s-7", "card": card, "minutes": 30},
		map[string]any{"session": "s-8", "card": card, "minutes": 90},
	}})})
	if err != nil {
		t.Fatal(err)
	}
	if len(hub.messages()) != 2 || c.hubCalls.Load() != 1 || !strings.Contains(string(replies[0].Payload), `"accepted":2`) {
		t.Errorf("batch: hub got %d in %d calls; reply %s", len(hub.messages()), c.hubCalls.Load(), replies[0].Payload)
	}
}

func TestProcessSlowHubTimesOut(t *testing.T) {
	c, _ := launch(t)
	hub := &recordingHub{delay: 2 * time.Second}
	if err := c.Configure(ctxT(t), json.RawMessage(`{"zone":"z","rate_per_hour":400}`), hub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Handle(ctx, sdk.Message{Type: "parking.session.end.v1",
		Payload: payload(t, map[string]any{"session": "s-9", "card": card, "minutes": 30})})
	e := wantCode(t, err, sdk.CodeTimeout, "")
	if !e.Retryable {
		t.Error("a timeout is not retryable")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("took %v: the deadline did not reach the hub call", d)
	}
}

func TestProcessCrashIsRetryable(t *testing.T) {
	c, pc := launch(t)
	ctx := ctxT(t)
	if err := c.Configure(ctx, json.RawMessage(`{"zone":"z","rate_per_hour":400}`), &recordingHub{}); err != nil {
		t.Fatal(err)
	}
	p, err := os.FindProcess(pc.ReattachConfig().Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !pc.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, err = c.Handle(ctx, sdk.Message{Type: "parking.quote.v1", Payload: json.RawMessage(`{"minutes":1}`)})
	e := wantCode(t, err, sdk.CodeUnavailable, "")
	if !e.Retryable {
		t.Error("a crashed plugin's error is not retryable")
	}
	if err := c.Health(ctx); err == nil {
		t.Error("a dead plugin reports healthy")
	}
}

func TestProcessBinaryRunByHand(t *testing.T) {
	path, _ := exampleBinary(t, "parking")
	out, err := exec.Command(path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("run without the hub: %v\n%s", err, out)
	}
}

func TestProcessChecksumMismatchRefused(t *testing.T) {
	path, sum := exampleBinary(t, "parking")
	bad := append([]byte(nil), sum...)
	bad[0] ^= 0xff
	pc := plugin.NewClient(ClientConfig(exec.Command(path), bad))
	defer pc.Kill()
	if _, err := Dispense(pc); !errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		t.Errorf("got %v, want ErrChecksumsDoNotMatch", err)
	}
}

// sessions makes n distinct parking sessions for a batch upload.
func sessions(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"session": fmt.Sprintf("b-%d", i), "card": card, "minutes": 30 + i}
	}
	return out
}

// BenchmarkRoundTrip is one Handle call through the child process with no
// hub call inside: the floor cost of talking to a plugin.
func BenchmarkRoundTrip(b *testing.B) {
	c, _ := launch(b)
	ctx := ctxT(b)
	if err := c.Configure(ctx, json.RawMessage(`{"zone":"z","rate_per_hour":400}`), &recordingHub{discard: true}); err != nil {
		b.Fatal(err)
	}
	m := sdk.Message{Type: "parking.quote.v1", Payload: json.RawMessage(`{"minutes":95}`)}
	for b.Loop() {
		if _, err := c.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRoundTripSubmit is one Handle call in which the plugin submits
// one message to the hub over the broker: two round trips.
func BenchmarkRoundTripSubmit(b *testing.B) {
	c, _ := launch(b)
	ctx := ctxT(b)
	if err := c.Configure(ctx, json.RawMessage(`{"zone":"z","rate_per_hour":400}`), &recordingHub{discard: true}); err != nil {
		b.Fatal(err)
	}
	m := sdk.Message{Type: "parking.session.end.v1", Payload: payload(b, map[string]any{"session": "s", "card": card, "minutes": 95})}
	for b.Loop() {
		if _, err := c.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSubmitBatch is one Handle call in which the plugin submits a
// batch of 100 messages to the hub: the path of high-volume channels.
func BenchmarkSubmitBatch(b *testing.B) {
	const batch = 100
	c, _ := launch(b)
	ctx := ctxT(b)
	hub := &recordingHub{discard: true}
	if err := c.Configure(ctx, json.RawMessage(`{"zone":"z","rate_per_hour":400}`), hub); err != nil {
		b.Fatal(err)
	}
	m := sdk.Message{Type: "parking.session.batch.v1", Payload: payload(b, map[string]any{"sessions": sessions(batch)})}
	for b.Loop() {
		if _, err := c.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	if hub.count != batch*b.N {
		b.Fatalf("hub got %d messages, want %d", hub.count, batch*b.N)
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
