package pos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// demoEnv runs the bundle's flows without a hub: Send goes to the plugin
// through plugintest, and API answers what the flows ask of the hub from
// the tests' bank.
type demoEnv struct {
	h    *plugintest.Harness
	bank *bank
	mu   sync.Mutex
	seen map[string]string // terminals registered
	logs []string
}

func (e *demoEnv) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if plugin != pos.Name {
		return nil, fmt.Errorf("no plugin %s", plugin)
	}
	return e.h.Client().Handle(ctx, m)
}

func (e *demoEnv) API(ctx context.Context, method, path string, body, out any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case method == http.MethodPost && path == "/v1/terminals":
		t := body.(map[string]any)
		id := t["id"].(string)
		if _, ok := e.seen[id]; ok {
			return fmt.Errorf("duplicate: terminal %s exists", id)
		}
		e.seen[id] = t["merchant"].(string)
		return nil
	case method == http.MethodGet && strings.HasPrefix(path, "/v1/cards/"):
		card := strings.TrimPrefix(path, "/v1/cards/")
		b, err := json.Marshal(map[string]any{"number": card, "balance": e.bank.balance(card)})
		if err != nil {
			return err
		}
		return json.Unmarshal(b, out)
	}
	return fmt.Errorf("the test's hub has no %s %s", method, path)
}

func (e *demoEnv) Card(holder string) string {
	return map[string]string{"alice": alice, "bob": bob, "carol": carol}[holder]
}

func (e *demoEnv) Logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, fmt.Sprintf(format, args...))
}

// TestBundle runs the bundle's flows against the plugin and the hub
// double, twice (the demo may run its flows again on the same hub).
func TestBundle(t *testing.T) {
	b := pos.Bundle()
	if b.Name != "pos" || b.Channel != "retail" || len(b.Merchants) != 1 || b.Merchants[0].ID != pos.DemoMerchant || b.Merchants[0].MCC != "5411" {
		t.Fatalf("bundle = %+v", b)
	}
	if len(b.Flows) != len(pos.Flows()) || len(b.Flows) < 2 {
		t.Fatalf("flows = %d", len(b.Flows))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, stop, err := b.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	bk := newBank()
	hub := plugintest.NewFakeHub()
	hub.RespondWith(bk.respond)
	h := plugintest.Start(t, b.New(), plugintest.WithHub(hub))
	if err := h.Configure(cfg); err != nil {
		t.Fatalf("the bundle's configuration: %v", err)
	}
	env := &demoEnv{h: h, bank: bk, seen: map[string]string{}}
	for range 2 {
		for _, f := range b.Flows {
			if err := f.Run(ctx, env); err != nil {
				t.Errorf("%s: %v", f.Name, err)
			}
		}
	}
	if env.seen[pos.DemoTerminal] != pos.DemoMerchant {
		t.Errorf("terminals registered: %v", env.seen)
	}
	for _, l := range env.logs {
		t.Log(l)
	}
	if got, want := bk.balance(alice), int64(50000-2*2580-2*3000); got != want || bk.held(alice) != 0 {
		t.Errorf("alice holds %d (%d on hold), want %d", got, bk.held(alice), want)
	}
}
