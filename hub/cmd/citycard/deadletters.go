package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/api"
)

func newDeadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "List and replay the messages the router gave up on",
		Long: `dead-letters talks to a running hub (--hub, env ` + envHub + `) as an admin
operator whose token is in ` + envToken + `.

A dead letter is a message whose handler failed for good: the plugin it was
for kept crashing, or it answered with an internal error. Fix the cause,
then replay the letter: it goes again to the handler that failed, with its
original correlation id and idempotency key.`,
	}
	cmd.PersistentFlags().String("hub", "http://127.0.0.1:8080", "the hub's address (env "+envHub+")")
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hubClient(cmd)
			if err != nil {
				return err
			}
			after, _ := cmd.Flags().GetInt64("after")
			limit, _ := cmd.Flags().GetInt("limit")
			asJSON, _ := cmd.Flags().GetBool("json")
			var ans struct {
				DeadLetters []api.DeadLetterView `json:"dead_letters"`
			}
			path := fmt.Sprintf("/v1/dead-letters?after=%d&limit=%d", after, limit)
			if err := c.call(cmd.Context(), "GET", path, "", nil, &ans); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ans.DeadLetters)
			}
			if len(ans.DeadLetters) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAT\tTOPIC\tHANDLER\tREPLAYED\tREASON")
			for _, l := range ans.DeadLetters {
				replayed := "-"
				if l.ReplayedAt != nil {
					replayed = l.ReplayedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.At.Format(time.RFC3339), l.Topic, l.Handler, replayed, l.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().Int64("after", 0, "list letters with an id above this")
	list.Flags().Int("limit", 100, "at most this many letters (1 to 1000)")
	list.Flags().Bool("json", false, "print JSON instead of a table")
	replay := &cobra.Command{
		Use:   "replay ID",
		Short: "Replay one dead letter to the handler that failed on it",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("%s takes one dead letter id", cmd.CommandPath())
			}
			if _, err := strconv.ParseInt(args[0], 10, 64); err != nil {
				return usageError("%q is not a dead letter id", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hubClient(cmd)
			if err != nil {
				return err
			}
			if err := c.call(cmd.Context(), "POST", "/v1/dead-letters/"+args[0]+"/replay", "", struct{}{}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dead letter %s replayed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, replay)
	return group(cmd)
}

// hubClient is an API client for --hub with the token in CITYCARD_TOKEN.
func hubClient(cmd *cobra.Command) (*apiClient, error) {
	token := os.Getenv(envToken)
	if token == "" {
		return nil, usageError("set %s to an admin operator's token", envToken)
	}
	return newAPIClient(setting(cmd, "hub", envHub), token), nil
}
