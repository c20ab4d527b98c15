package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citycard/citycard/hub/internal/logtest"
	"github.com/citycard/citycard/sdk"
)

// recordingHub is the test's stand-in for the hub's services.
type recordingHub struct {
	mu  sync.Mutex
	got []sdk.Message
}

func (h *recordingHub) Submit(_ context.Context, m sdk.Message) (sdk.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, m)
	return sdk.Result{Body: json.RawMessage(`{"status":"charged"}`)}, nil
}

func (h *recordingHub) SubmitBatch(_ context.Context, ms []sdk.Message) ([]sdk.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, ms...)
	return make([]sdk.Result, len(ms)), nil
}

func (h *recordingHub) Query(context.Context, string, string) (json.RawMessage, error) {
	return json.RawMessage(`{"status":"active"}`), nil
}

func (h *recordingHub) messages() []sdk.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sdk.Message(nil), h.got...)
}

// logSink collects the host's JSON log records.
type logSink struct{ logtest.Buffer }

// records returns the records with plugin=name whose msg contains text.
func (s *logSink) records(name, text string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		if r["plugin"] == name && strings.Contains(r["msg"].(string), text) {
			out = append(out, r)
		}
	}
	return out
}

// testHost is a Host with fast supervision, its log and its hub.
type testHost struct {
	*Host
	logs *logSink
	hub  *recordingHub
	reg  *prometheus.Registry
}

func newTestHost(t *testing.T, opts Options) *testHost {
	t.Helper()
	th := &testHost{logs: &logSink{}, hub: &recordingHub{}, reg: prometheus.NewRegistry()}
	opts.Logger = slog.New(slog.NewJSONHandler(th.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Hub = func(string) sdk.Hub { return th.hub }
	opts.Registerer = th.reg
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 100 * time.Millisecond
	}
	if opts.RestartBackoff.Initial == 0 {
		opts.RestartBackoff.Initial = 50 * time.Millisecond
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 20 * time.Second
	}
	th.Host = New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = th.Stop(ctx)
	})
	return th
}

func echoSpec(config string) Spec {
	return Spec{Name: "echo", Path: echoBin, SHA256: echoSum, Config: json.RawMessage(config)}
}

func say(text string, sleepMS int) sdk.Message {
	p, _ := json.Marshal(map[string]any{"text": text, "sleep_ms": sleepMS})
	return sdk.Message{Type: "echo.say.v1", Payload: p}
}

// gone reports whether no process has pid (go-plugin reaps its children,
// so a dead plugin leaves no zombie either).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func status(t *testing.T, h *Host, name string) PluginStatus {
	t.Helper()
	for _, s := range h.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s", name)
	return PluginStatus{}
}

// metric reads one sample of a gathered metric family by plugin label.
func metric(t *testing.T, reg *prometheus.Registry, family, plugin string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParkingDescribeHandleSubmit(t *testing.T) {
	h := newTestHost(t, Options{})
	ctx := context.Background()
	spec := Spec{Name: "parking", Path: parkingBin, SHA256: parkingSum,
		Config: json.RawMessage(`{"zone":"z1","rate_per_hour":300}`)}
	if err := h.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	d, ok := h.Describe("parking")
	if !ok || d.Name != "parking" || len(d.Handles) == 0 {
		t.Fatalf("Describe = %+v, %v", d, ok)
	}
	if _, ok := h.Describe("nope"); ok {
		t.Error("Describe of an unknown plugin succeeded")
	}
	replies, err := h.Handle(ctx, "parking", sdk.Message{Type: "parking.session.end.v1",
		Payload: json.RawMessage(`{"session":"s1","card":"6200000000000001","minutes":61}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != "parking.receipt.v1" {
		t.Fatalf("replies = %+v", replies)
	}
	got := h.hub.messages()
	if len(got) != 1 || got[0].Type != "parking.fee.v1" || got[0].Source != "parking" {
		t.Fatalf("hub got %+v", got)
	}
	var fee struct{ Amount int64 }
	if err := json.Unmarshal(got[0].Payload, &fee); err != nil || fee.Amount != 600 {
		t.Errorf("fee = %s (%v), want amount 600 for two started hours", got[0].Payload, err)
	}
	if _, err := h.Handle(ctx, "nope", sdk.Message{}); err == nil {
		t.Error("Handle to an unknown plugin succeeded")
	}

	st := status(t, h.Host, "parking")
	if st.State != StateRunning || st.PID == 0 || st.Restarts != 0 {
		t.Fatalf("status = %+v", st)
	}
	if v := metric(t, h.reg, "citycard_plugin_handle_total", "parking"); v != 1 {
		t.Errorf("handle_total = %v, want 1", v)
	}
	if v := metric(t, h.reg, "citycard_plugin_up", "parking"); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !gone(st.PID) {
		t.Errorf("plugin process %d outlived Stop", st.PID)
	}
	if st := status(t, h.Host, "parking"); st.State != StateStopped || st.PID != 0 {
		t.Errorf("status after Stop = %+v", st)
	}
	if _, err := h.Handle(ctx, "parking", sdk.Message{}); !retryable(err) {
		t.Errorf("Handle after Stop: %v, want a retryable unavailable error", err)
	}
}

// retryable reports whether err is the host's retryable unavailable error.
func retryable(err error) bool {
	var e *sdk.Error
	return errors.As(err, &e) && e.Code == sdk.CodeUnavailable && e.Retryable
}

func TestWrongChecksumRefused(t *testing.T) {
	h := newTestHost(t, Options{})
	spec := echoSpec(`{"greeting":"hi"}`)
	spec.SHA256 = strings.Repeat("00", 32)
	err := h.Start(context.Background(), spec)
	if err == nil || !errors.Is(err, plugin.ErrChecksumsDoNotMatch) ||
		!strings.Contains(err.Error(), "plugin echo") || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("err = %v, want a checksum error naming the plugin", err)
	}
	if len(h.Status()) != 0 {
		t.Errorf("a refused plugin is listed: %+v", h.Status())
	}
	if len(h.logs.records("echo", "echo configured")) != 0 {
		t.Error("the refused binary ran")
	}
}

func TestConfigRefusedBeforeConfigure(t *testing.T) {
	tests := []struct {
		name, config, field string
	}{
		{"missing greeting", `{}`, ""},
		{"unknown field", `{"greeting":"hi","colour":"red"}`, ""},
		{"bad enum", `{"greeting":"hi","on_handle":"explode"}`, "/on_handle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHost(t, Options{})
			err := h.Start(context.Background(), echoSpec(tt.config))
			var e *sdk.Error
			if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || !strings.Contains(err.Error(), "plugin echo") {
				t.Fatalf("err = %v, want config_invalid naming the plugin", err)
			}
			if tt.field != "" && e.Field != tt.field {
				t.Errorf("field = %q, want %q", e.Field, tt.field)
			}
			// The plugin logs on Configure: silence proves it never got there.
			if r := h.logs.records("echo", "echo configured"); len(r) != 0 {
				t.Errorf("the plugin was configured: %v", r)
			}
		})
	}
}

func TestStderrForwarded(t *testing.T) {
	h := newTestHost(t, Options{})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, "echo", say("tram", 0)); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"echo configured greeting=hello", "echo handling tram"} {
		waitFor(t, "log line "+text, func() bool { return len(h.logs.records("echo", text)) == 1 })
		r := h.logs.records("echo", text)[0]
		if r["msg"] != text || r["level"] != "INFO" || r["stream"] != "stderr" {
			t.Errorf("record = %v", r)
		}
	}
}

func TestHungPluginTimesOut(t *testing.T) {
	h := newTestHost(t, Options{HandleTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi","on_handle":"hang"}`)); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err := h.Handle(ctx, "echo", say("x", 0))
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeTimeout || !e.Retryable {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Handle took %v despite HandleTimeout", d)
	}
	if v := metric(t, h.reg, "citycard_plugin_handle_total", "echo"); v != 1 {
		t.Errorf("handle_total = %v", v)
	}
}

// TestCrashUnderLoad kills the plugin with SIGKILL while calls stream in:
// every failure is retryable, none hangs, the call known to be in flight is
// handed to OnCrash, the host restarts the plugin and calls succeed again.
func TestCrashUnderLoad(t *testing.T) {
	var crashMu sync.Mutex
	var crashes [][]sdk.Message
	h := newTestHost(t, Options{OnCrash: func(name string, inFlight []sdk.Message) {
		crashMu.Lock()
		defer crashMu.Unlock()
		if name == "echo" {
			crashes = append(crashes, inFlight)
		}
	}})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	oldPID := status(t, h.Host, "echo").PID

	// One slow call, surely in flight when the process dies.
	slow := say("slow", 10000)
	slow.ID = sdk.NewID()
	slowErr := make(chan error, 1)
	go func() {
		_, err := h.Handle(ctx, "echo", slow)
		slowErr <- err
	}()
	waitFor(t, "the slow call to reach the plugin", func() bool { return len(h.logs.records("echo", "echo handling slow")) == 1 })

	// A stream of calls from several callers.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	var bad []error
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := h.Handle(cctx, "echo", say("load", 5))
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case retryable(err):
					failed++
				default:
					bad = append(bad, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond) // as a caller's retry would
				}
			}
		}()
	}
	waitFor(t, "some calls to succeed", func() bool { mu.Lock(); defer mu.Unlock(); return ok > 10 })

	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-slowErr:
		if !retryable(err) {
			t.Errorf("in-flight call: %v, want a retryable unavailable error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call hung after the crash")
	}
	waitFor(t, "the restart", func() bool {
		s := status(t, h.Host, "echo")
		return s.State == StateRunning && s.Restarts == 1
	})
	mu.Lock()
	okBefore := ok
	mu.Unlock()
	waitFor(t, "calls to succeed after the restart", func() bool { mu.Lock(); defer mu.Unlock(); return ok > okBefore+10 })
	close(stop)
	wg.Wait()

	if len(bad) > 0 {
		t.Errorf("%d calls failed with non-retryable errors, first: %v", len(bad), bad[0])
	}
	t.Logf("calls: %d ok, %d retryable failures", ok, failed)
	st := status(t, h.Host, "echo")
	if st.PID == 0 || st.PID == oldPID || st.LastError != "process exited: signal: killed" {
		t.Errorf("status = %+v, want a new PID and the crash as LastError", st)
	}
	crashMu.Lock()
	if len(crashes) != 1 {
		t.Errorf("OnCrash called %d times, want 1", len(crashes))
	} else if !containsID(crashes[0], slow.ID) {
		t.Errorf("OnCrash in-flight messages %d lack the slow call", len(crashes[0]))
	}
	crashMu.Unlock()
	if v := metric(t, h.reg, "citycard_plugin_restarts_total", "echo"); v != 1 {
		t.Errorf("restarts_total = %v, want 1", v)
	}
	if v := metric(t, h.reg, "citycard_plugin_up", "echo"); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	if !gone(oldPID) {
		t.Errorf("killed process %d still exists", oldPID)
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !gone(st.PID) {
		t.Errorf("restarted process %d outlived Stop", st.PID)
	}
}

func containsID(ms []sdk.Message, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// TestPluginCrashingInHandle: a plugin that exits mid-call fails the call
// retryably and is restarted, with the backoff growing between attempts.
func TestPluginCrashingInHandle(t *testing.T) {
	h := newTestHost(t, Options{})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi","on_handle":"crash"}`)); err != nil {
		t.Fatal(err)
	}
	first := status(t, h.Host, "echo").PID
	if _, err := h.Handle(ctx, "echo", say("boom", 0)); !retryable(err) {
		t.Fatalf("err = %v, want a retryable unavailable error", err)
	}
	waitFor(t, "the restart", func() bool {
		s := status(t, h.Host, "echo")
		return s.State == StateRunning && s.Restarts == 1 && s.PID != first
	})
}

func TestStartTwiceAndAfterStop(t *testing.T) {
	h := newTestHost(t, Options{})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi"}`)); err == nil {
		t.Error("the same plugin started twice")
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, Spec{Name: "parking", Path: parkingBin, SHA256: parkingSum}); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop: %v", err)
	}
}

// TestUnhealthyPluginRestarted: a live process that fails HealthFailures
// pings in a row is killed and launched again.
func TestUnhealthyPluginRestarted(t *testing.T) {
	h := newTestHost(t, Options{HealthInterval: 50 * time.Millisecond, HealthFailures: 2})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi","unhealthy":true}`)); err != nil {
		t.Fatal(err)
	}
	first := status(t, h.Host, "echo").PID
	waitFor(t, "a restart", func() bool { return status(t, h.Host, "echo").Restarts >= 1 })
	st := status(t, h.Host, "echo")
	if !strings.Contains(st.LastError, "2 health checks failed") || !strings.Contains(st.LastError, "told to be unhealthy") {
		t.Errorf("LastError = %q", st.LastError)
	}
	if !gone(first) {
		t.Errorf("unhealthy process %d was not killed", first)
	}
}
