package medical_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// demoEnv runs the bundle's flows without a hub: Send goes to the plugin
// through plugintest, whose FakeHub answers bills as the tests' hub does.
type demoEnv struct {
	h    *plugintest.Harness
	logs []string
}

func (e *demoEnv) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if plugin != medical.Name {
		return nil, fmt.Errorf("no plugin %s", plugin)
	}
	return e.h.Client().Handle(ctx, m)
}

// API answers the one hub route the flows use, the day's reconciliation.
// Without a ledger the stand-in counts what the insurer counts: the hub's
// own comparison is tested with the hub (hub/internal/wiring TestMedicalBills).
func (e *demoEnv) API(ctx context.Context, method, path string, body, out any) error {
	u, err := url.Parse(path)
	if err != nil || method != "GET" || u.Path != "/v1/medical/reconciliation" {
		return fmt.Errorf("the test's hub has no %s %s", method, path)
	}
	payload, _ := json.Marshal(map[string]string{"date": u.Query().Get("date")})
	replies, err := e.Send(ctx, medical.Name, sdk.Message{Type: medical.TypeReconcile, Payload: payload})
	if err != nil {
		return err
	}
	var ins json.RawMessage = replies[0].Payload
	b, _ := json.Marshal(map[string]any{"hub": ins, "insurer": ins, "matched": true, "differences": []any{}})
	return json.Unmarshal(b, out)
}

func (e *demoEnv) Card(holder string) string {
	return map[string]string{"alice": aliceCard, "bob": carolCard}[holder]
}

func (e *demoEnv) Logf(format string, args ...any) {
	e.logs = append(e.logs, fmt.Sprintf(format, args...))
}

func TestBundle(t *testing.T) {
	b := medical.Bundle()
	if b.Name != "medical" || b.Channel != "medical" || len(b.Merchants) != 2 || len(b.Flows) != 5 {
		t.Fatalf("bundle = %+v", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, stop, err := b.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	w := &world{t: t, bills: map[string]receipt{}}
	hub := plugintest.NewFakeHub()
	hub.RespondWith(w.respond)
	w.p = medical.New(medical.WithLogger(slog.New(slog.DiscardHandler)))
	w.h = plugintest.Start(t, w.p, plugintest.WithHub(hub))
	if err := w.h.Configure(cfg); err != nil {
		t.Fatalf("the bundle's configuration: %v", err)
	}
	env := &demoEnv{h: w.h}
	for _, f := range b.Flows {
		if err := f.Run(ctx, env); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
	for _, l := range env.logs {
		t.Log(l)
	}
	if err := w.h.Close(); err != nil {
		t.Error(err)
	}
}
