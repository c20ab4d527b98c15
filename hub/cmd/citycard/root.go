package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/drivers"
	"github.com/citycard/citycard/hub/internal/wiring"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed, or found a problem
	exitUsage   = 2 // the command line was wrong; nothing was done
)

// Environment variables read by the commands. A flag given on the command
// line wins over its variable.
const (
	envDB         = "CITYCARD_DB"
	envListen     = "CITYCARD_LISTEN"
	envAdminToken = "CITYCARD_ADMIN_TOKEN"
	envPlugins    = "CITYCARD_PLUGINS"
	envBus        = "CITYCARD_BUS"
	envHub        = "CITYCARD_HUB"
	envToken      = "CITYCARD_TOKEN"
)

// exitError carries a non-default exit code up to run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError reports a command line that cannot be acted on.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// run is the whole program; main and the script tests call it.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "citycard: %v\n", err)
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return exitFailure
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "citycard",
		Short: "CityCard hub: citizen cards, purses and the double-entry ledger",
		Long: `citycard runs the CityCard hub (serve) and its offline tools.

Every command that touches data takes --db: sqlite://PATH (the embedded
default, created on first use) or postgres://USER@HOST:PORT/DB.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError("%v (see %s --help)", err, cmd.CommandPath())
	})
	root.AddCommand(newServeCmd(), newOperatorsCmd(), newLedgerCmd(), newVersionCmd(),
		newPluginCmd(), newDeadLettersCmd(), newDemoCmd(), newConformanceCmd())
	return group(root)
}

// group makes cmd a command that only holds subcommands: without
// arguments it prints its help, and an unknown subcommand is a usage error
// (cobra would otherwise print the help and succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError("%s (see %s --help)", msg, cmd.CommandPath())
	}
	return cmd
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// addDBFlag adds --db; openStore and serve read it back through setting.
func addDBFlag(fs *pflag.FlagSet) {
	fs.String("db", wiring.DefaultDB, "store: sqlite://PATH or postgres://USER@HOST:PORT/DB (env "+envDB+")")
}

// setting returns flag name's value when it was given on the command line,
// else the environment variable env when set, else the flag's default.
func setting(cmd *cobra.Command, name, env string) string {
	f := cmd.Flags().Lookup(name)
	if f.Changed {
		return f.Value.String()
	}
	if v := os.Getenv(env); v != "" {
		return v
	}
	return f.DefValue
}

// openStore opens the store named by --db or CITYCARD_DB.
func openStore(cmd *cobra.Command) (store.Store, error) {
	dsn := setting(cmd, "db", envDB)
	st, err := drivers.Open(cmd.Context(), dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", describeStore(dsn), err)
	}
	return st, nil
}
