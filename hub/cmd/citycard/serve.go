package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/wiring"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub: the /v1 API, /healthz, /readyz and /metrics",
		Long: `serve runs the hub until SIGINT or SIGTERM, then stops taking requests and
finishes the ones in flight: no write that was acknowledged is lost.

The store is created and migrated on first use. If ` + envAdminToken + ` is set
(at least 16 characters), an operator "admin" holding that token is ensured,
for unattended set-ups; otherwise add operators with "citycard operators add".
Logs are JSON lines on stderr.

--plugins names a JSON file listing the plugins the hub launches and
supervises:

  {"plugins": [
    {"name": "utilities", "bundled": true, "config": {…}},
    {"name": "parking", "path": "bin/citycard-plugin-parking",
     "sha256": "<sha256sum of the binary>", "channel": "retail", "config": {…}}
  ]}

A bundled plugin is run from this binary; any other is checked against its
sha256 before it runs. Messages between the hub and its plugins travel
through a router: in process by default, or --bus nats://HOST:PORT (NATS
JetStream, for several hub nodes), --bus postgres (durable, in the hub's
own PostgreSQL store, where every ledger batch also writes its transfer
events in its own transaction) or --bus postgres://… (durable, in another
database).`,
		Args: noArgs,
		RunE: runServe,
	}
	addDBFlag(cmd.Flags())
	cmd.Flags().String("listen", wiring.DefaultListen, "address to listen on, host:port (env "+envListen+")")
	addPluginFlags(cmd)
	addCheckpointsFlag(cmd.Flags())
	cmd.Flags().String("checkpoint-key", "", "the key signing the checkpoints, generated on first use (default: the checkpoint log's name with .key, its verifier key with .pub)")
	cmd.Flags().Int64("checkpoint-every", checkpoint.DefaultEvery, "write a checkpoint after this many batches…")
	cmd.Flags().Duration("checkpoint-interval", checkpoint.DefaultInterval, "…or after this long, whichever comes first, when the head moved")
	cmd.Flags().Duration("saga-stale-after", wiring.DefaultSagaStaleAfter,
		"how long a payment with legs at a bank or an insurer may go without progress before the hub takes it as left by a stopped hub and finishes or undoes it")
	return cmd
}

func runServe(cmd *cobra.Command, _ []string) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
	dsn := setting(cmd, "db", envDB)
	listen := setting(cmd, "listen", envListen)

	specs, busURL, err := pluginSettings(cmd)
	if err != nil {
		return err
	}
	stale, _ := cmd.Flags().GetDuration("saga-stale-after")
	ckeys, _ := cmd.Flags().GetString("checkpoint-key")
	every, _ := cmd.Flags().GetInt64("checkpoint-every")
	interval, _ := cmd.Flags().GetDuration("checkpoint-interval")
	if every < 1 || interval <= 0 {
		return usageError("--checkpoint-every and --checkpoint-interval must be positive")
	}
	app, err := wiring.Open(ctx, wiring.Config{
		DB:             dsn,
		Listen:         listen,
		AdminToken:     os.Getenv(envAdminToken),
		Logger:         log,
		Plugins:        specs,
		Bus:            busURL,
		SagaStaleAfter: stale,
		Checkpoints: checkpoint.Config{Log: checkpointLog(cmd, dsn), SignerKey: ckeys,
			Every: every, Interval: interval},
	})
	if err != nil {
		return fmt.Errorf("start on store %s: %w", describeStore(dsn), err)
	}
	err = serve(ctx, cmd.OutOrStdout(), app, listen, describeStore(dsn), log)
	if cerr := app.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// addPluginFlags adds --plugins and --bus.
func addPluginFlags(cmd *cobra.Command) {
	cmd.Flags().String("plugins", "", "JSON file listing the plugins to run (env "+envPlugins+")")
	cmd.Flags().String("bus", "gochannel", "message router: gochannel, nats://HOST:PORT, postgres (the store's database) or postgres://… (env "+envBus+")")
}

// pluginSettings reads --plugins and --bus.
func pluginSettings(cmd *cobra.Command) ([]pluginhost.Spec, string, error) {
	busURL := setting(cmd, "bus", envBus)
	if _, _, err := wiring.ParseBus(busURL); err != nil {
		return nil, "", usageError("--%v", err)
	}
	file := setting(cmd, "plugins", envPlugins)
	if file == "" {
		return nil, busURL, nil
	}
	specs, err := pluginhost.LoadSpecs(file)
	if err != nil {
		return nil, "", usageError("--plugins: %v", err)
	}
	if err := resolveBundled(specs); err != nil {
		return nil, "", usageError("--plugins %s: %v", file, err)
	}
	return specs, busURL, nil
}

// serve listens and serves until ctx is done.
func serve(ctx context.Context, out io.Writer, app *wiring.Hub, listen, store string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	// One human line on stdout; tests read the address from it when
	// listening on port 0.
	fmt.Fprintf(out, "citycard listening on http://%s (store: %s)\n", ln.Addr(), store)
	log.Info("serving", "addr", ln.Addr().String(), "store", store)
	return app.Serve(ctx, ln)
}

// describeStore names the driver and where its data lives, for logs and
// messages. It never shows a password, so it is safe to print any DSN.
func describeStore(dsn string) string {
	scheme, rest, _ := strings.Cut(dsn, ":")
	if scheme == "sqlite" || scheme == "sqlite3" {
		return "sqlite " + strings.TrimPrefix(rest, "//")
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(a DSN that is not a URL)"
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Del(k)
		}
	}
	where := u.Host + u.Path
	if u.User != nil {
		where = u.User.Username() + "@" + where
	}
	if len(q) > 0 {
		where += "?" + q.Encode()
	}
	return u.Scheme + " " + where
}
