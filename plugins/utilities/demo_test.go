package utilities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// demoEnv runs the bundle's flows without a hub: Send goes to the plugin
// through plugintest, and API answers the two reads the flows make from
// the tests' bank.
type demoEnv struct {
	t    *testing.T
	h    *plugintest.Harness
	bank *bank
	logs []string
}

func (e *demoEnv) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if plugin != "utilities" {
		return nil, fmt.Errorf("no plugin %s", plugin)
	}
	return e.h.Client().Handle(ctx, m)
}

func (e *demoEnv) API(ctx context.Context, method, path string, body, out any) error {
	e.bank.mu.Lock()
	defer e.bank.mu.Unlock()
	var answer any
	switch {
	case method == http.MethodGet && strings.HasPrefix(path, "/v1/cards/"):
		card := strings.TrimPrefix(path, "/v1/cards/")
		bal, ok := e.bank.balances[card]
		if !ok {
			return fmt.Errorf("card_not_found: %s", card)
		}
		answer = map[string]any{"number": card, "balance": bal}
	case method == http.MethodGet && strings.HasPrefix(path, "/v1/transfers/"):
		p, ok := e.bank.byID[strings.TrimPrefix(path, "/v1/transfers/")]
		if !ok {
			return fmt.Errorf("transfer_not_found: %s", path)
		}
		answer = map[string]any{"id": p.id, "amount": p.amount, "merchant": p.merchant, "card": p.card}
	default:
		return fmt.Errorf("the test's hub has no %s %s", method, path)
	}
	b, err := json.Marshal(answer)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func (e *demoEnv) Card(holder string) string {
	return map[string]string{"alice": alice, "bob": bob}[holder]
}

func (e *demoEnv) Logf(format string, args ...any) {
	e.logs = append(e.logs, fmt.Sprintf(format, args...))
}

func TestBundle(t *testing.T) {
	b := utilities.Bundle()
	if b.Name != "utilities" || b.Channel != "utilities" || len(b.Merchants) != 5 || len(b.Flows) < 4 {
		t.Fatalf("bundle = %+v", b)
	}
	for _, m := range b.Merchants {
		if m.ID == "" || m.Name == "" || len(m.MCC) != 4 || m.FeeRateBps <= 0 {
			t.Errorf("merchant %+v", m)
		}
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
	// Every configured biller is a merchant the hub is told about.
	var c struct {
		Billers map[string]struct{ Merchant string } `json:"billers"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	for code, bl := range c.Billers {
		found := false
		for _, m := range b.Merchants {
			found = found || m.ID == bl.Merchant
		}
		if !found {
			t.Errorf("biller %s pays merchant %s, which the bundle does not seed", code, bl.Merchant)
		}
	}

	env := &demoEnv{t: t, h: h, bank: bk}
	for _, f := range b.Flows {
		if err := f.Run(ctx, env); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
	for _, l := range env.logs {
		t.Log(l)
	}
	if err := h.Close(); err != nil {
		t.Error(err)
	}
}
