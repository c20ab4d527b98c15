package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// cliTopUp posts 100 onto a card's cash purse.
type cliTopUp struct{ card string }

func (o cliTopUp) Prefetch(k *ledger.Keys) { k.Account("cash:outlets", "purse:"+o.card+":cash") }

func (o cliTopUp) Apply(tx *ledger.Tx) (any, error) {
	from := tx.EnsureAccount(store.Account{Code: "cash:outlets", Kind: store.KindCash, Currency: "CNY"})
	to := tx.EnsureAccount(store.Account{Code: "purse:" + o.card + ":cash", Kind: store.KindPurse, Currency: "CNY",
		Card: o.card, Purse: "cash", Constrained: true})
	return tx.Post(store.Transfer{Kind: store.TransferTopUp, Currency: "CNY", Card: o.card, Amount: 100,
		Entries: []store.Entry{{Account: from.ID, Amount: 100}, {Account: to.ID, Amount: -100}}}, time.Time{})
}

// dsnOf is the DSN the command line reaches a test store with.
func dsnOf(t *testing.T, st store.Store) string {
	switch s := st.(type) {
	case interface{ Path() string }:
		return "sqlite://" + s.Path()
	case interface{ Schema() string }:
		return os.Getenv(storetest.PostgresEnv) + "&search_path=" + s.Schema()
	}
	t.Fatalf("no DSN for a %s store", st.Driver())
	return ""
}

// TestVerifyDeletedTailCLI is the reproduction through the
// command: 230 batches checkpointed every 10, the last 200 deleted with the
// account totals rolled back to match. `ledger verify` exits 1 naming batch
// 31, the first missing, and the checkpoint of batch 30 as the last that
// matched; --json says the same for machines.
func TestVerifyDeletedTailCLI(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		log := filepath.Join(t.TempDir(), "ledger.checkpoints")
		w, err := checkpoint.NewWriter(st, checkpoint.Config{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 230; i++ {
			if _, err := eng.Submit(ctx, cliTopUp{"3100990000000013"}, ledger.SubmitOptions{}); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				if _, err := w.Write(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		eng.Close()
		w.Close(ctx)
		args := []string{"ledger", "verify", "--db", dsnOf(t, st), "--checkpoints", log}
		var out, errw bytes.Buffer
		if code := run(args, &out, &errw); code != 0 || !strings.Contains(out.String(), "ledger OK") {
			t.Fatalf("before: exit %d\n%s%s", code, out.String(), errw.String())
		}

		storetest.DeleteBatchesFrom(t, st, 31)
		out.Reset()
		errw.Reset()
		if code := run(args, &out, &errw); code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errw.String())
		}
		for _, want := range []string{
			"problem: store-behind-checkpoint: checkpoint record 4 ",
			"names batch 40, but the store ends at batch 30: batches from 31 on are missing",
			"the last checkpoint that matched is record 3, batch 30",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		if strings.Contains(out.String(), "ledger OK") || strings.Contains(out.String(), "account-totals") {
			t.Errorf("output:\n%s", out.String())
		}

		out.Reset()
		if code := run(append(args, "--json"), &out, &errw); code != 1 {
			t.Fatalf("--json: exit %d", code)
		}
		var rep struct {
			OK          bool
			Problems    []ledger.Problem
			LastMatched *ledger.CheckpointSeen `json:"last_matched_checkpoint"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Kind != ledger.ProblemStoreBehind ||
			rep.Problems[0].Batch != 31 || rep.LastMatched == nil || rep.LastMatched.Batch != 30 {
			t.Fatalf("--json report: %+v", rep)
		}
	})
}
