package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/ledger"
)

func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect the ledger",
	}
	cmd.AddCommand(newLedgerVerifyCmd())
	return group(cmd)
}

func newLedgerVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-derive every balance from the entries and check the hash chain",
		Long: `verify reads every committed batch, checks the hash chain and that every
transfer balances, re-derives each account's totals from its entries and
compares them with the stored ones, and checks the trial balance. It prints
a summary and every problem found, and exits 1 if there is any.

Run it against a stopped hub for an audit: beside a running one it checks a
moving target.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			errw := cmd.ErrOrStderr()
			start := time.Now()
			fmt.Fprintln(errw, "verifying the ledger…")
			// A line every few seconds on a long ledger, so an operator
			// sees it is moving.
			last := time.Now()
			r, err := ledger.VerifyProgress(cmd.Context(), st, func(r ledger.Report) {
				if time.Since(last) >= 2*time.Second {
					last = time.Now()
					fmt.Fprintf(errw, "  %d batches, %d transfers checked…\n", r.Batches, r.Transfers)
				}
			})
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			fmt.Fprintf(errw, "verified in %s\n", time.Since(start).Round(time.Millisecond))

			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "batches:       %d\n", r.Batches)
			fmt.Fprintf(out, "transfers:     %d\n", r.Transfers)
			fmt.Fprintf(out, "entries:       %d\n", r.Entries)
			fmt.Fprintf(out, "accounts:      %d\n", r.Accounts)
			fmt.Fprintf(out, "total debits:  %d\n", r.TotalDebits)
			fmt.Fprintf(out, "total credits: %d\n", r.TotalCredits)
			if r.OK() {
				fmt.Fprintln(out, "ledger OK")
				return nil
			}
			for _, p := range r.Problems {
				fmt.Fprintf(out, "problem: %s\n", p)
			}
			return fmt.Errorf("the ledger has %d problem(s)", len(r.Problems))
		},
	}
	addDBFlag(cmd.Flags())
	return cmd
}
