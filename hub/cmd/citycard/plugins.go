package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/sdk"
)

// bundles are the reference plugins shipped inside the citycard binary, in
// the order the demo runs them.
var bundles = []func() demo.Bundle{transit.Bundle, pos.Bundle, unionpay.Bundle, utilities.Bundle, medical.Bundle}

// bundle returns the bundled plugin named name.
func bundle(name string) (demo.Bundle, bool) {
	for _, f := range bundles {
		if b := f(); b.Name == name {
			return b, true
		}
	}
	return demo.Bundle{}, false
}

func bundleNames() []string {
	var out []string
	for _, f := range bundles {
		out = append(out, f().Name)
	}
	return out
}

func newPluginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "The reference plugins shipped inside citycard",
	}
	serve := &cobra.Command{
		Use:   "serve NAME",
		Short: "Serve a bundled plugin to a hub (the hub runs this; people do not)",
		Long: `serve runs the bundled plugin NAME as a go-plugin process. The hub starts it
itself for a plugin listed with "bundled": true in its --plugins file; run by
hand it only says that it must be started by a hub.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("%s takes one plugin name (one of %s)", cmd.CommandPath(), strings.Join(bundleNames(), ", "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			b, ok := bundle(args[0])
			if !ok {
				return usageError("no bundled plugin %q (bundled: %s)", args[0], strings.Join(bundleNames(), ", "))
			}
			sdk.Serve(b.New())
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the bundled plugins",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCHANNEL\tVERSION\tHANDLES\tSENDS")
			for _, f := range bundles {
				b := f()
				d := b.New().Describe()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.Channel, d.Version, typeList(d.Handles), typeList(d.Sends))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(serve, list)
	return group(cmd)
}

func typeList(ms []sdk.MessageType) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// resolveBundled fills in how to run each bundled plugin: this very
// binary, `plugin serve NAME`, checked against its own sum.
func resolveBundled(specs []pluginhost.Spec) error {
	var exe, sum string
	for i := range specs {
		s := &specs[i]
		if !s.Bundled {
			continue
		}
		b, ok := bundle(s.Name)
		if !ok {
			return fmt.Errorf("plugin %q is marked bundled, but citycard bundles only %s", s.Name, strings.Join(bundleNames(), ", "))
		}
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return fmt.Errorf("find the citycard binary to run bundled plugins: %w", err)
			}
			if sum, err = pluginhost.FileSHA256(exe); err != nil {
				return fmt.Errorf("checksum the citycard binary: %w", err)
			}
		}
		s.Path, s.Args, s.SHA256 = exe, []string{"plugin", "serve", s.Name}, sum
		if s.Channel == "" {
			s.Channel = b.Channel
		}
	}
	return nil
}
