package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/sdk"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a throwaway hub with every bundled plugin and show each flow working",
		Long: `demo starts the hub on a throwaway embedded store with every bundled plugin
and its partner simulator, seeds a small city (merchants and three cards:
alice, bob and carol), runs the card life cycle and every plugin's scripted
flows, and prints one line per flow: "flow NAME: ok", or what failed.

Then it keeps serving the API until interrupted, printing the address and
an admin token to explore it with. With --exit it stops after the flows
instead, and exits non-zero if any flow failed. The store is deleted when
the demo ends.`,
		Args: noArgs,
		RunE: runDemo,
	}
	cmd.Flags().Bool("exit", false, "stop after the flows; exit non-zero if any failed")
	cmd.Flags().String("listen", "127.0.0.1:0", "address to serve the API on, host:port")
	cmd.Flags().Bool("verbose", false, "show the hub's and plugins' logs on stderr")
	return cmd
}

// demoMerchant is where the card life-cycle flow shops.
const demoMerchant = "M-DEMO-SHOP"

func runDemo(cmd *cobra.Command, _ []string) (err error) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exit, _ := cmd.Flags().GetBool("exit")
	verbose, _ := cmd.Flags().GetBool("verbose")
	listen, _ := cmd.Flags().GetString("listen")
	out := cmd.OutOrStdout()

	dir, err := os.MkdirTemp("", "citycard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logw := io.Discard
	if verbose {
		logw = cmd.ErrOrStderr()
	}
	log := slog.New(slog.NewJSONHandler(logw, nil))
	token := newKey() + newKey()

	var specs []pluginhost.Spec
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	var all []demo.Bundle
	for _, f := range bundles {
		b := f()
		var config []byte
		if b.Start != nil {
			c, stopSim, err := b.Start(ctx)
			if err != nil {
				return fmt.Errorf("start the %s simulator: %w", b.Name, err)
			}
			stops = append(stops, stopSim)
			config = c
		}
		specs = append(specs, pluginhost.Spec{Name: b.Name, Bundled: true, Config: config, Channel: b.Channel})
		all = append(all, b)
	}
	if err := resolveBundled(specs); err != nil {
		return err
	}
	dsn := "sqlite://" + dir + "/demo.db"
	fmt.Fprintf(out, "starting a demo hub on %s with %d bundled plugin(s)\n", describeStore(dsn), len(specs))
	app, err := wiring.Open(ctx, wiring.Config{DB: dsn, AdminToken: token, Logger: log, Plugins: specs})
	if err != nil {
		return fmt.Errorf("start the demo hub: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		app.Close()
		return err
	}
	base := "http://" + ln.Addr().String()
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- app.Serve(serveCtx, ln) }()
	defer func() {
		stopServe()
		if serr := <-served; serr != nil && err == nil {
			err = serr
		}
	}()

	env := &demoEnv{app: app, api: newAPIClient(base, token), out: out, cards: map[string]string{}}
	failed := 0
	run := func(name string, f func(context.Context) error) {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := f(fctx); err != nil {
			failed++
			fmt.Fprintf(out, "flow %s: FAILED: %v\n", name, err)
			return
		}
		fmt.Fprintf(out, "flow %s: ok\n", name)
	}
	run("seed the city", func(ctx context.Context) error { return env.seed(ctx, all) })
	for _, f := range cardFlows() {
		run(f.Name, func(ctx context.Context) error { return f.Run(ctx, env) })
	}
	for _, b := range all {
		for _, f := range b.Flows {
			run(f.Name, func(ctx context.Context) error { return f.Run(ctx, env) })
		}
	}
	// Flows across two plugins: a bank card at a city terminal goes through
	// the hub to the acquirer.
	if _, ok := bundle("unionpay"); ok {
		var flows []demo.Flow
		if _, ok := bundle("pos"); ok {
			flows = append(flows, pos.BankFlows()...)
		}
		if _, ok := bundle("medical"); ok {
			flows = append(flows, medical.BankFlows()...)
		}
		for _, f := range flows {
			run(f.Name, func(ctx context.Context) error { return f.Run(ctx, env) })
		}
	}
	run("ledger verify", func(ctx context.Context) error {
		rep, err := ledger.Verify(ctx, app.Store())
		if err != nil {
			return err
		}
		if !rep.OK() {
			return fmt.Errorf("%d problem(s): %v", len(rep.Problems), rep.Problems)
		}
		return nil
	})
	fmt.Fprintf(out, "%d flow(s) failed\n", failed)
	if exit || ctx.Err() != nil {
		if failed > 0 {
			return &exitError{code: exitFailure, err: fmt.Errorf("%d demo flow(s) failed", failed)}
		}
		return nil
	}
	fmt.Fprintf(out, "the demo hub serves %s until interrupted (Ctrl-C)\n", base)
	fmt.Fprintf(out, "try: curl -H 'Authorization: Bearer %s' %s/v1/plugins\n", token, base)
	<-ctx.Done()
	fmt.Fprintln(out, "stopping the demo hub")
	if failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d demo flow(s) failed", failed)}
	}
	return nil
}

// demoEnv is what flows use: the running hub and its seeded cards.
type demoEnv struct {
	app   *wiring.Hub
	api   *apiClient
	out   io.Writer
	cards map[string]string
}

func (e *demoEnv) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	return e.app.Send(ctx, plugin, m)
}

func (e *demoEnv) API(ctx context.Context, method, path string, body, out any) error {
	return e.api.call(ctx, method, path, "", body, out)
}

func (e *demoEnv) Card(holder string) string { return e.cards[holder] }

func (e *demoEnv) Logf(format string, args ...any) {
	fmt.Fprintf(e.out, "  "+format+"\n", args...)
}

// seed registers every bundle's merchants and the demo shop, and issues
// alice's, bob's and carol's cards.
func (e *demoEnv) seed(ctx context.Context, bundles []demo.Bundle) error {
	merchants := []demo.Merchant{{ID: demoMerchant, Name: "Demo corner shop", MCC: "5411", FeeRateBps: 60}}
	for _, b := range bundles {
		merchants = append(merchants, b.Merchants...)
	}
	for _, m := range merchants {
		body := map[string]any{"id": m.ID, "name": m.Name, "mcc": m.MCC, "fee_rate_bps": m.FeeRateBps,
			"settlement_account": "6222020000000001"}
		if err := e.API(ctx, "POST", "/v1/merchants", body, nil); err != nil {
			return fmt.Errorf("merchant %s: %w", m.ID, err)
		}
	}
	holders := []struct {
		name, id string
		topUp    int64
	}{{"alice", "310101199001011234", 50000}, {"bob", "310101198502022345", 300}, {"carol", "310101197003033456", 10000}}
	for _, h := range holders {
		number, err := e.issue(ctx, h.name, h.id)
		if err != nil {
			return err
		}
		e.cards[h.name] = number
		if err := e.API(ctx, "POST", "/v1/cards/"+number+"/topups",
			map[string]any{"amount": h.topUp, "currency": "CNY", "purse": "cash", "method": "cash"}, nil); err != nil {
			return fmt.Errorf("top up %s's card: %w", h.name, err)
		}
	}
	if err := e.API(ctx, "POST", "/v1/cards/"+e.cards["carol"]+"/loss", nil, nil); err != nil {
		return fmt.Errorf("report carol's card lost: %w", err)
	}
	e.Logf("cards: alice %s (500.00), bob %s (3.00), carol %s (lost)", e.cards["alice"], e.cards["bob"], e.cards["carol"])
	return nil
}

func (e *demoEnv) issue(ctx context.Context, name, id string) (string, error) {
	var card struct {
		Number string `json:"number"`
	}
	body := map[string]any{"holder": map[string]any{"name": name, "id_type": "resident_id", "id_number": id},
		"pin": "123456", "method": "cash"}
	if err := e.API(ctx, "POST", "/v1/cards", body, &card); err != nil {
		return "", fmt.Errorf("issue %s's card: %w", name, err)
	}
	return card.Number, nil
}

// cardFlows are the hub's own flows: the card life cycle at a counter.
func cardFlows() []demo.Flow {
	return []demo.Flow{{
		Name: "card: issue, top up, pay, report loss, replace and cancel",
		Run: func(ctx context.Context, env demo.Env) error {
			e := env.(*demoEnv)
			number, err := e.issue(ctx, "dave", "310101200004044567")
			if err != nil {
				return err
			}
			if err := e.API(ctx, "POST", "/v1/cards/"+number+"/topups",
				map[string]any{"amount": 10000, "currency": "CNY", "purse": "cash", "method": "cash"}, nil); err != nil {
				return fmt.Errorf("top up: %w", err)
			}
			var paid struct {
				Status  string `json:"status"`
				Balance int64  `json:"balance"`
			}
			if err := e.API(ctx, "POST", "/v1/payments", map[string]any{"card": number, "channel": "retail",
				"merchant": demoMerchant, "amount": 1250, "currency": "CNY"}, &paid); err != nil {
				return fmt.Errorf("pay: %w", err)
			}
			if paid.Status != "approved" || paid.Balance != 8750 {
				return fmt.Errorf("pay 12.50 from 100.00: status %s, balance %d, want approved and 8750", paid.Status, paid.Balance)
			}
			if err := e.API(ctx, "POST", "/v1/cards/"+number+"/loss", nil, nil); err != nil {
				return fmt.Errorf("report loss: %w", err)
			}
			var repl struct {
				Number string `json:"number"`
			}
			if err := e.API(ctx, "POST", "/v1/cards/"+number+"/replace", map[string]any{"method": "cash"}, &repl); err != nil {
				return fmt.Errorf("replace: %w", err)
			}
			var card struct {
				Balance int64 `json:"balance"`
			}
			if err := e.API(ctx, "GET", "/v1/cards/"+repl.Number, nil, &card); err != nil {
				return err
			}
			if card.Balance != 8750 {
				return fmt.Errorf("the replacement card holds %d, want the 8750 left on the lost one", card.Balance)
			}
			if err := e.API(ctx, "POST", "/v1/cards/"+repl.Number+"/cancel", nil, nil); err != nil {
				return fmt.Errorf("cancel: %w", err)
			}
			e.Logf("dave's card %s: paid 12.50, lost, replaced by %s with 87.50, cancelled and refunded", number, repl.Number)
			return nil
		},
	}, {
		Name: "card: a lost card is declined",
		Run: func(ctx context.Context, env demo.Env) error {
			var paid struct {
				Status string `json:"status"`
				Reason string `json:"reason"`
			}
			err := env.API(ctx, "POST", "/v1/payments", map[string]any{"card": env.Card("carol"), "channel": "retail",
				"merchant": demoMerchant, "amount": 100, "currency": "CNY"}, &paid)
			var p *problemError
			switch {
			case errors.As(err, &p):
				env.Logf("carol's lost card refused: %s", p.Code)
				return nil
			case err != nil:
				return err
			case paid.Status != "declined":
				return fmt.Errorf("a payment with a lost card was %s", paid.Status)
			}
			env.Logf("carol's lost card declined: %s", paid.Reason)
			return nil
		},
	}}
}
