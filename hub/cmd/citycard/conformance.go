package main

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/conformance"
)

func newConformanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance [--config FILE] [--junit FILE] PLUGIN-BINARY [-- ARGS...]",
		Short: "Prove a plugin against the conformance kit (conformance/SPEC.md)",
		Long: `conformance launches PLUGIN-BINARY as the hub does, acts as the hub
itself, and checks every requirement of conformance/SPEC.md: the handshake,
the self-description, configuration, the messages it emits, its answers to
invalid input, duplicate delivery, a slow or failing hub, concurrency, a
restart after kill -9 and a clean shutdown. Arguments after -- are passed
to the plugin.

--config names a conformance file (schemas/conformance-file.json): the
plugin's configuration, sample messages it handles and canned hub answers.
Without one, the plugin is configured with {} and handed payloads made from
its schemas.

Each check prints a line as it finishes (on stderr), then a table of results
(on stdout). --junit writes the results as JUnit XML too, one testcase per
requirement id. The exit status is 0 only when every MUST requirement
passes; a failed SHOULD is reported but does not fail the run.`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) == 0 || dash == 0 {
				return usageError("%s needs the plugin binary (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
			}
			if (dash < 0 && len(args) > 1) || dash > 1 {
				return usageError("%s takes one plugin binary; put the plugin's own arguments after --, got %q", cmd.CommandPath(), args)
			}
			return nil
		},
		RunE: runConformance,
	}
	cmd.Flags().String("config", "", "conformance file: the plugin's configuration, samples and hub answers")
	cmd.Flags().String("junit", "", "also write the results as JUnit XML to this file")
	cmd.Flags().StringArray("env", nil, "KEY=VALUE for the plugin's environment, which inherits nothing (repeatable)")
	cmd.Flags().StringSlice("only", nil, "check only these requirement ids (and those they depend on), e.g. CC-PLUGIN-013")
	cmd.Flags().Bool("plugin-logs", false, "copy what the plugin writes on stderr (its logs) to stderr")
	return cmd
}

func runConformance(cmd *cobra.Command, args []string) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := conformance.Options{Binary: args[0], Args: args[1:]}
	opts.Env, _ = cmd.Flags().GetStringArray("env")
	opts.Only, _ = cmd.Flags().GetStringSlice("only")
	for _, id := range opts.Only {
		if !slices.ContainsFunc(conformance.Requirements(), func(r conformance.Requirement) bool { return r.ID == id }) {
			return usageError("--only: no requirement %s (see conformance/SPEC.md)", id)
		}
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		f, err := conformance.LoadFile(path)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		opts.File = f
	}
	junit, _ := cmd.Flags().GetString("junit")
	errw := cmd.ErrOrStderr()
	if logs, _ := cmd.Flags().GetBool("plugin-logs"); logs {
		opts.PluginStderr = errw
	}
	opts.Progress = func(r conformance.Result) { fmt.Fprintln(errw, r) }

	fmt.Fprintf(errw, "checking %s\n", opts.Binary)
	report, err := conformance.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := report.WriteTable(cmd.OutOrStdout()); err != nil {
		return err
	}
	if junit != "" {
		if err := writeJUnit(junit, report); err != nil {
			return err
		}
	}
	if !report.OK() {
		return fmt.Errorf("%s does not conform: %d failed, %d errors", opts.Binary, report.Count(conformance.Fail), report.Count(conformance.Error))
	}
	return nil
}

func writeJUnit(path string, r *conformance.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := r.WriteJUnit(f); err != nil {
		f.Close()
		return fmt.Errorf("junit: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}
