package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/drivers"
)

// envCheckpoints names the checkpoint log, for serve, verify and checkpoint.
const envCheckpoints = "CITYCARD_CHECKPOINTS"

// defaultCheckpointDir holds the checkpoint log of a PostgreSQL store,
// which has no file to sit beside.
const defaultCheckpointDir = "./citycard-data"

func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect the ledger",
	}
	cmd.AddCommand(newLedgerVerifyCmd(), newLedgerCheckpointCmd())
	return group(cmd)
}

// addCheckpointsFlag adds --checkpoints.
func addCheckpointsFlag(fs *pflag.FlagSet) {
	fs.String("checkpoints", "", "the checkpoint log (default: PATH.checkpoints beside a sqlite://PATH store, "+
		defaultCheckpointDir+"/DB.checkpoints, or DB.SCHEMA.checkpoints with a search_path, for PostgreSQL) (env "+envCheckpoints+")")
}

// checkpointLog is the checkpoint log named by --checkpoints or
// CITYCARD_CHECKPOINTS, or the default one of the store dsn.
func checkpointLog(cmd *cobra.Command, dsn string) string {
	if p := setting(cmd, "checkpoints", envCheckpoints); p != "" {
		return p
	}
	if path, ok := drivers.SQLitePath(dsn); ok {
		return path + ".checkpoints"
	}
	// Named by database and schema, so that two ledgers served from one
	// directory never share a log.
	name := "checkpoints"
	if u, err := url.Parse(dsn); err == nil && strings.Trim(u.Path, "/") != "" {
		name = strings.Trim(u.Path, "/")
		if sp := u.Query().Get("search_path"); sp != "" {
			name += "." + sp
		}
		name = strings.Map(func(r rune) rune {
			if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-", r)) {
				return r
			}
			return '_'
		}, name) + ".checkpoints"
	}
	return filepath.Join(defaultCheckpointDir, name)
}

// openExistingStore opens the store named by --db or CITYCARD_DB for
// checking: it never creates nor migrates one.
func openExistingStore(cmd *cobra.Command) (store.Store, string, error) {
	dsn := setting(cmd, "db", envDB)
	st, err := drivers.OpenExisting(cmd.Context(), dsn)
	if errors.Is(err, store.ErrNoStore) {
		return nil, dsn, fmt.Errorf("no store at %s: nothing to check (%w)", describeStore(dsn), err)
	}
	if err != nil {
		return nil, dsn, fmt.Errorf("open store %s: %w", describeStore(dsn), err)
	}
	return st, dsn, nil
}

func newLedgerVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the ledger: the hash chain against the checkpoint log, every balance, idempotency records, holds, sagas and the audit chain",
		Long: `verify reads every committed batch, checks the hash chain and that every
transfer balances, re-derives each account's totals from its entries and
compares them with the stored ones, and checks the trial balance; it checks
that every idempotency record, pending hold and saga points at a transfer
that exists, and walks the audit log's hash chain.

It compares the store with every signed checkpoint of the checkpoint log
(--checkpoints, by default the one the hub writes beside the store) read
with the verifier key (--key, by default LOG.pub): a deleted tail, a
rewritten batch or a database rolled back to an older copy is reported with
the first batch that differs and the last checkpoint that matched. A log
that is missing, truncated, signed by another key or ahead of the store is
a problem; a store that never had a log gets a warning, and is not called
OK.

It prints a summary and every problem (--json: the report as JSON), and
exits 1 if there is any. The store must exist: verify never creates one.
It refuses a store a running hub holds, unless --live, when it checks up to
the head it read (account totals, which move, are then not compared).`,
		Args: noArgs,
		RunE: runVerify,
	}
	addDBFlag(cmd.Flags())
	addCheckpointsFlag(cmd.Flags())
	cmd.Flags().String("key", "", "the verifier key of the checkpoints (default: the log's name with .pub)")
	cmd.Flags().Bool("live", false, "check a store a running hub serves, up to the head read at the start")
	cmd.Flags().Bool("json", false, "print the report as JSON")
	return cmd
}

func runVerify(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	st, dsn, err := openExistingStore(cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	live, _ := cmd.Flags().GetBool("live")
	asJSON, _ := cmd.Flags().GetBool("json")
	release, err := st.LockWriter(ctx)
	switch {
	case errors.Is(err, store.ErrLocked) && !live:
		return fmt.Errorf("store %s is in use by a running hub: stop it first, or give --live to check up to the head it has committed",
			describeStore(dsn))
	case errors.Is(err, store.ErrLocked):
		// Live: the hub writes on; the log and head are read in that order
		// so no checkpoint read can be ahead of the head.
	case err != nil:
		return err
	default:
		defer release()
		live = false
	}

	cps, err := readCheckpoints(cmd, dsn)
	if err != nil {
		return err
	}
	opts := ledger.Options{Checkpoints: cps}
	if live {
		h, err := st.Head(ctx)
		if err != nil {
			return err
		}
		opts.Live, opts.UpTo = true, h.LastBatch
	}
	errw := cmd.ErrOrStderr()
	start := time.Now()
	fmt.Fprintln(errw, "verifying the ledger…")
	// A line every few seconds on a long ledger, so an operator sees it is
	// moving.
	last := time.Now()
	opts.Progress = func(r ledger.Report) {
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			fmt.Fprintf(errw, "  %d batches, %d transfers checked…\n", r.Batches, r.Transfers)
		}
	}
	r, err := ledger.VerifyWith(ctx, st, opts)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(errw, "verified in %s\n", time.Since(start).Round(time.Millisecond))
	if asJSON {
		out := struct {
			OK       bool `json:"ok"`
			Anchored bool `json:"anchored"`
			ledger.Report
		}{r.OK(), r.Anchored(), r}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printReport(cmd.OutOrStdout(), r)
	}
	if !r.OK() {
		return fmt.Errorf("the ledger has %d problem(s)", len(r.Problems))
	}
	return nil
}

// readCheckpoints reads the checkpoint log for verify. A missing log is
// passed on for verify to judge; a log without its verifier key is an error.
func readCheckpoints(cmd *cobra.Command, dsn string) (*ledger.Checkpoints, error) {
	log := checkpointLog(cmd, dsn)
	keyPath, _ := cmd.Flags().GetString("key")
	if keyPath == "" {
		_, keyPath = checkpoint.KeyPaths(log)
	}
	cps := &ledger.Checkpoints{Source: log}
	v, err := checkpoint.LoadVerifier(keyPath)
	if err != nil {
		if _, serr := os.Stat(log); errors.Is(serr, fs.ErrNotExist) {
			cps.Err = &checkpoint.LogError{Kind: checkpoint.LogMissing, Path: log, Err: serr}
			return cps, nil
		}
		return nil, fmt.Errorf("checkpoint log %s: %w (give the verifier key with --key)", log, err)
	}
	cps.Entries, cps.Err = checkpoint.ReadFile(log, v, checkpoint.DefaultOrigin)
	return cps, nil
}

// printReport writes the report for people: a summary, then the warnings
// and problems.
func printReport(out io.Writer, r ledger.Report) {
	fmt.Fprintf(out, "batches:       %d\n", r.Batches)
	fmt.Fprintf(out, "transfers:     %d\n", r.Transfers)
	fmt.Fprintf(out, "entries:       %d\n", r.Entries)
	if !r.Live {
		fmt.Fprintf(out, "accounts:      %d\n", r.Accounts)
		fmt.Fprintf(out, "total debits:  %d\n", r.TotalDebits)
		fmt.Fprintf(out, "total credits: %d\n", r.TotalCredits)
	}
	fmt.Fprintf(out, "idempotency:   %d\n", r.Idempotency)
	fmt.Fprintf(out, "sagas:         %d\n", r.Sagas)
	fmt.Fprintf(out, "audit rows:    %d\n", r.AuditRows)
	if m := r.LastMatched; m != nil {
		fmt.Fprintf(out, "checkpoints:   %d compared, the last that matched: record %d, batch %d, signed %s\n",
			r.Checkpoints, m.Record, m.Batch, m.Time.Format(time.RFC3339))
	} else {
		fmt.Fprintf(out, "checkpoints:   %d compared, none matched\n", r.Checkpoints)
	}
	if r.Live {
		fmt.Fprintf(out, "live: checked up to batch %d of a running hub; account totals not compared\n", r.UpTo)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(out, "problem: %s: %s\n", p.Kind, p.Message)
	}
	switch {
	case r.Anchored():
		fmt.Fprintln(out, "ledger OK")
	case r.OK():
		fmt.Fprintln(out, "ledger consistent in itself, but not proven against a checkpoint log")
	}
}

func newLedgerCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the ledger's current head as a signed checkpoint, for an auditor to keep",
		Long: `checkpoint prints the head of the ledger (the last batch's sequence and
hash, the time, and the audit log's head) as a C2SP signed note, signed with
the hub's signer key (--checkpoint-key, by default the checkpoint log's name
with .key). Without a key it can read it prints the note unsigned and says
so on stderr. An auditor who keeps these notes can later check a store with
"citycard ledger verify --checkpoints FILE --key VERIFIER-KEY".

It reads the store only, never creates one, and appends nothing to the log.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, dsn, err := openExistingStore(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			h, err := st.Head(cmd.Context())
			if err != nil {
				return err
			}
			c := checkpoint.Checkpoint{Origin: checkpoint.DefaultOrigin, Batch: h.LastBatch, Hash: h.LastHash,
				Time: time.Now().UTC(), Audit: h.LastAudit, AuditHash: h.AuditHash}
			keyPath, _ := cmd.Flags().GetString("checkpoint-key")
			if keyPath == "" {
				keyPath, _ = checkpoint.KeyPaths(checkpointLog(cmd, dsn))
			}
			signer, err := checkpoint.LoadSigner(keyPath)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "citycard: no signer key (%v): the checkpoint below is NOT signed\n", err)
				_, err = cmd.OutOrStdout().Write(checkpoint.Unsigned(c))
				return err
			}
			signed, err := checkpoint.Sign(c, signer)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(signed)
			return err
		},
	}
	addDBFlag(cmd.Flags())
	addCheckpointsFlag(cmd.Flags())
	cmd.Flags().String("checkpoint-key", "", "the signer key (default: the checkpoint log's name with .key)")
	return cmd
}
