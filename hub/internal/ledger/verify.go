package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/store"
)

// Kinds of Problem.
const (
	ProblemChain              = "chain"                   // a gap, or a previous hash that does not match
	ProblemBatchHash          = "batch-hash"              // a batch's transfers do not give its hash
	ProblemBatchCount         = "batch-count"             // a batch holds another number of transfers than it records
	ProblemTransferOrder      = "transfer-order"          // transfer ids out of order
	ProblemUnbalanced         = "unbalanced"              // a transfer's entries do not sum to zero
	ProblemAccountTotals      = "account-totals"          // stored totals differ from the entries
	ProblemBelowLimit         = "below-limit"             // a constrained account below its limit
	ProblemUnknownAccount     = "unknown-account"         // entries name an account that does not exist
	ProblemTrialBalance       = "trial-balance"           // debits and credits differ
	ProblemHold               = "hold"                    // a pending hold without its live pending transfer
	ProblemIdempotency        = "idempotency"             // an answer naming a transfer that is not there, or another
	ProblemSaga               = "saga"                    // a saga naming a transfer that does not exist
	ProblemAudit              = "audit"                   // a break in the audit log's chain
	ProblemStoreBehind        = "store-behind-checkpoint" // a checkpoint names a batch the store no longer has
	ProblemCheckpointMismatch = "checkpoint-mismatch"     // a checkpointed batch's hash differs from the store's
	ProblemAuditBehind        = "audit-behind-checkpoint" // a checkpoint names audit rows the store lacks, or another audit head
	ProblemCheckpointLog      = "checkpoint-log"          // the log is missing, truncated, foreign-signed or malformed
)

// Problem is one thing verify found wrong, with the ids at fault.
type Problem struct {
	Kind     string `json:"kind"`
	Batch    int64  `json:"batch,omitempty"`
	Transfer int64  `json:"transfer,omitempty"`
	Account  string `json:"account,omitempty"`
	Hold     int64  `json:"hold,omitempty"`
	// Operator and Key name an idempotency record or a saga.
	Operator string `json:"operator,omitempty"`
	Key      string `json:"key,omitempty"`
	Audit    int64  `json:"audit,omitempty"`
	// Record is the checkpoint's position in its log, from 1.
	Record  int    `json:"checkpoint_record,omitempty"`
	Message string `json:"message"`
}

// String is the problem's message, which names the ids at fault.
func (p Problem) String() string { return p.Message }

// Report is what Verify found.
type Report struct {
	Batches      int64 `json:"batches"`
	Transfers    int64 `json:"transfers"`
	Entries      int64 `json:"entries"`
	Accounts     int64 `json:"accounts"`
	TotalDebits  int64 `json:"total_debits"`
	TotalCredits int64 `json:"total_credits"`
	Idempotency  int64 `json:"idempotency_records"`
	Sagas        int64 `json:"sagas"`
	AuditRows    int64 `json:"audit_rows"`
	// Checkpoints is how many checkpoints were compared, LastMatched the
	// last one the store agreed with (nil for none).
	Checkpoints int64           `json:"checkpoints"`
	LastMatched *CheckpointSeen `json:"last_matched_checkpoint,omitempty"`
	Live        bool            `json:"live,omitempty"`
	UpTo        int64           `json:"up_to_batch,omitempty"`
	// Warnings are not problems but keep the ledger from being called
	// proven, e.g. no checkpoint log anchors it.
	Warnings []string `json:"warnings,omitempty"`
	// Problems lists every mismatch; the ledger is sound when it is empty.
	Problems []Problem `json:"problems"`
}

// CheckpointSeen names a checkpoint of the log.
type CheckpointSeen struct {
	Record int       `json:"record"`
	Batch  int64     `json:"batch"`
	Time   time.Time `json:"time"`
}

// OK reports whether the ledger verified clean.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Anchored reports whether the ledger verified clean against a checkpoint
// log, with nothing to warn about.
func (r Report) Anchored() bool { return r.OK() && len(r.Warnings) == 0 }

// Checkpoints is what verify is given of a checkpoint log.
type Checkpoints struct {
	// Source names the log in messages.
	Source string
	// Entries are the checkpoints read, up to the first bad record.
	Entries []checkpoint.Entry
	// Err is what was wrong with the log, nil if nothing; a
	// *checkpoint.LogError says which.
	Err error
}

// Options tune VerifyWith.
type Options struct {
	// Progress is called after every batch checked, with the running
	// report.
	Progress func(Report)
	// Checkpoints, when set, are compared with the store; nil skips the
	// comparison (and the warning that nothing anchors the ledger).
	Checkpoints *Checkpoints
	// Live checks the batches up to UpTo only: verify beside a running
	// hub. Account totals and the trial balance move with the hub and are
	// then not compared.
	Live bool
	UpTo int64
}

type totals struct{ dp, cp, dpend, cpend int64 }

// maxProblems bounds the report: a ledger rewritten from its first batch
// would otherwise list every batch after it.
const maxProblems = 1000

// Verify re-derives every account's totals from the entries, checks that
// each transfer balances, that the hash chain is unbroken, that no
// constrained account is below its limit, that the trial balance balances,
// that idempotency records, holds and sagas point at transfers that exist,
// and the audit log's chain. Run it on a stopped hub's store.
func Verify(ctx context.Context, st store.Store) (Report, error) {
	return VerifyWith(ctx, st, Options{})
}

// VerifyProgress is Verify that calls progress after every batch it has
// checked (with the running report), so a long audit can show how far it is.
func VerifyProgress(ctx context.Context, st store.Store, progress func(Report)) (Report, error) {
	return VerifyWith(ctx, st, Options{Progress: progress})
}

// errUpTo stops the batch stream past Options.UpTo.
var errUpTo = errors.New("past the last batch to check")

// VerifyWith is Verify with options: checkpoints to compare, progress, and
// a bound for a live store.
func VerifyWith(ctx context.Context, st store.Store, opts Options) (Report, error) {
	r := Report{Problems: []Problem{}, Live: opts.Live}
	if opts.Live {
		r.UpTo = opts.UpTo
	}
	add := func(p Problem) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, p)
		}
	}
	holds, err := st.PendingHolds(ctx)
	if err != nil {
		return r, err
	}
	open := make(map[int64]bool, len(holds))
	for _, h := range holds {
		open[h.ID] = true
	}
	// The checkpointed batches' hashes are kept as the stream passes them.
	wanted := map[int64][]byte{}
	if cps := opts.Checkpoints; cps != nil {
		for _, e := range cps.Entries {
			wanted[e.Batch] = nil
		}
	}
	sums := map[int64]*totals{}
	get := func(id int64) *totals {
		t := sums[id]
		if t == nil {
			t = &totals{}
			sums[id] = t
		}
		return t
	}
	var (
		prev         []byte
		lastSeq      int64
		lastTransfer int64
		ids          []int64 // every transfer id, ascending
	)
	err = st.Batches(ctx, func(b store.BatchRecord, ts []store.Transfer) error {
		if opts.Live && b.Seq > opts.UpTo {
			return errUpTo
		}
		r.Batches++
		if b.Seq != lastSeq+1 {
			add(Problem{Kind: ProblemChain, Batch: b.Seq,
				Message: fmt.Sprintf("batch %d follows batch %d: the chain has a gap", b.Seq, lastSeq)})
		}
		lastSeq = b.Seq
		if _, ok := wanted[b.Seq]; ok {
			wanted[b.Seq] = b.Hash
		}
		if !bytes.Equal(b.PrevHash, prev) {
			add(Problem{Kind: ProblemChain, Batch: b.Seq,
				Message: fmt.Sprintf("batch %d: previous hash does not match batch %d", b.Seq, b.Seq-1)})
		}
		if h := ChainHash(b.PrevHash, b.Seq, ts); !bytes.Equal(h, b.Hash) {
			add(Problem{Kind: ProblemBatchHash, Batch: b.Seq,
				Message: fmt.Sprintf("batch %d: hash mismatch: its transfers were changed after commit", b.Seq)})
		}
		if b.Transfers != len(ts) {
			add(Problem{Kind: ProblemBatchCount, Batch: b.Seq,
				Message: fmt.Sprintf("batch %d: records %d transfers, holds %d", b.Seq, b.Transfers, len(ts))})
		}
		prev = b.Hash
		for _, t := range ts {
			r.Transfers++
			if t.ID <= lastTransfer {
				add(Problem{Kind: ProblemTransferOrder, Batch: b.Seq, Transfer: t.ID,
					Message: fmt.Sprintf("batch %d: transfer %d out of order", b.Seq, t.ID)})
			} else {
				ids = append(ids, t.ID)
			}
			lastTransfer = max(lastTransfer, t.ID)
			var sum int64
			for _, en := range t.Entries {
				r.Entries++
				sum += en.Amount
				a := get(en.Account)
				switch {
				case t.Pending && !open[t.ID]:
					// a hold since captured, voided or expired: no longer counts
				case t.Pending && en.Amount > 0:
					a.dpend += en.Amount
				case t.Pending:
					a.cpend -= en.Amount
				case en.Amount > 0:
					a.dp += en.Amount
				default:
					a.cp -= en.Amount
				}
			}
			if sum != 0 {
				add(Problem{Kind: ProblemUnbalanced, Batch: b.Seq, Transfer: t.ID,
					Message: fmt.Sprintf("transfer %d (batch %d) does not balance: entries sum to %d", t.ID, b.Seq, sum)})
			}
		}
		if opts.Progress != nil {
			opts.Progress(r)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUpTo) {
		return r, err
	}
	// exists answers from the stream's ids; beside a live hub, a transfer
	// past the checked batches is looked up.
	exists := func(id int64) (bool, error) {
		if _, ok := slices.BinarySearch(ids, id); ok {
			return true, nil
		}
		if r.Live && id > lastTransfer {
			_, err := st.GetTransfer(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		}
		return false, nil
	}

	for _, id := range slices.Sorted(maps.Keys(open)) {
		t, err := st.GetTransfer(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			add(Problem{Kind: ProblemHold, Hold: id, Transfer: id,
				Message: fmt.Sprintf("hold %d is pending but its transfer %d does not exist", id, id)})
		case err != nil:
			return r, err
		case !t.Pending:
			add(Problem{Kind: ProblemHold, Hold: id, Transfer: id, Batch: t.Batch,
				Message: fmt.Sprintf("hold %d is pending but transfer %d (batch %d) is a posted %s, not a hold", id, id, t.Batch, t.Kind)})
		}
	}

	if !r.Live {
		if err := checkTotals(ctx, st, &r, sums, add); err != nil {
			return r, err
		}
	}
	if err := checkIdempotency(ctx, st, &r, exists, add); err != nil {
		return r, err
	}
	if err := checkSagas(ctx, st, &r, exists, add); err != nil {
		return r, err
	}
	ar, err := VerifyAudit(ctx, st)
	if err != nil {
		return r, fmt.Errorf("audit log: %w", err)
	}
	r.AuditRows = ar.Rows
	for _, p := range ar.Problems {
		add(Problem{Kind: ProblemAudit, Audit: p.ID, Message: fmt.Sprintf("audit row %d: %s", p.ID, p.Detail)})
	}
	if opts.Checkpoints != nil {
		if err := checkCheckpoints(ctx, st, &r, opts.Checkpoints, wanted, lastSeq, add); err != nil {
			return r, err
		}
	}
	return r, nil
}

// checkTotals compares every account's stored totals with those re-derived
// from the entries, and the trial balance.
func checkTotals(ctx context.Context, st store.Store, r *Report, sums map[int64]*totals, add func(Problem)) error {
	err := st.AllAccounts(ctx, func(a store.Account) error {
		r.Accounts++
		want := sums[a.ID]
		if want == nil {
			want = &totals{}
		}
		delete(sums, a.ID)
		if a.DebitsPosted != want.dp || a.CreditsPosted != want.cp {
			add(Problem{Kind: ProblemAccountTotals, Account: a.Code, Message: fmt.Sprintf(
				"account %s: stored posted debits/credits %d/%d, entries give %d/%d",
				a.Code, a.DebitsPosted, a.CreditsPosted, want.dp, want.cp)})
		}
		if a.DebitsPending != want.dpend || a.CreditsPending != want.cpend {
			add(Problem{Kind: ProblemAccountTotals, Account: a.Code, Message: fmt.Sprintf(
				"account %s: stored pending debits/credits %d/%d, open holds give %d/%d",
				a.Code, a.DebitsPending, a.CreditsPending, want.dpend, want.cpend)})
		}
		if a.Constrained && Available(a) < -a.NegativeLimit {
			add(Problem{Kind: ProblemBelowLimit, Account: a.Code, Message: fmt.Sprintf(
				"account %s: available %d is below its limit -%d", a.Code, Available(a), a.NegativeLimit)})
		}
		r.TotalDebits += a.DebitsPosted
		r.TotalCredits += a.CreditsPosted
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(sums)) {
		add(Problem{Kind: ProblemUnknownAccount, Account: strconv.FormatInt(id, 10),
			Message: fmt.Sprintf("entries name account %d, which does not exist", id)})
	}
	if r.TotalDebits != r.TotalCredits {
		add(Problem{Kind: ProblemTrialBalance, Message: fmt.Sprintf(
			"trial balance: total debits %d != total credits %d", r.TotalDebits, r.TotalCredits)})
	}
	return nil
}

// AnsweredTransfer returns the transfer an idempotency record's answer
// names, and its card, or 0 when it names none. The rule: a successful
// (2xx) answer names a transfer by its "transfer" field or its receipt's
// ("receipt": {"transfer": …}), or by "id" in an approved payment or hold
// ("status": "approved") or a reversal ("reverses"); any other answer (a
// card, a merchant, a decline, an error) names none and is skipped.
func AnsweredTransfer(rec store.IdemRecord) (id int64, card string, ok bool) {
	if rec.Status < 200 || rec.Status > 299 || len(rec.Response) == 0 {
		return 0, "", false
	}
	var a struct {
		ID       json.RawMessage `json:"id"`
		Status   string          `json:"status"`
		Reverses json.RawMessage `json:"reverses"`
		Transfer json.RawMessage `json:"transfer"`
		Card     string          `json:"card"`
		Receipt  *struct {
			Transfer json.RawMessage `json:"transfer"`
			Card     string          `json:"card"`
		} `json:"receipt"`
	}
	if json.Unmarshal(rec.Response, &a) != nil {
		return 0, "", false
	}
	num := func(raw json.RawMessage) (int64, bool) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n > 0
	}
	switch {
	case a.Transfer != nil:
		id, ok = num(a.Transfer)
	case a.Receipt != nil && a.Receipt.Transfer != nil:
		id, ok = num(a.Receipt.Transfer)
		card = a.Receipt.Card
	case a.ID != nil && (a.Status == "approved" || a.Reverses != nil):
		id, ok = num(a.ID)
	}
	if card == "" {
		card = a.Card
	}
	return id, card, ok
}

// checkIdempotency checks that every answer naming a transfer names one
// that exists, on the same card.
func checkIdempotency(ctx context.Context, st store.Store, r *Report, exists func(int64) (bool, error), add func(Problem)) error {
	return st.IdempotencyRecords(ctx, func(rec store.IdemRecord) error {
		r.Idempotency++
		id, card, ok := AnsweredTransfer(rec)
		if !ok {
			return nil
		}
		there, err := exists(id)
		if err != nil {
			return err
		}
		if !there {
			add(Problem{Kind: ProblemIdempotency, Transfer: id, Operator: rec.Operator, Key: rec.Key, Message: fmt.Sprintf(
				"idempotency key %q of operator %s answered %d with transfer %d, which does not exist: a retry would be told of money that was never posted",
				rec.Key, rec.Operator, rec.Status, id)})
			return nil
		}
		if card == "" {
			return nil
		}
		t, err := st.GetTransfer(ctx, id)
		if err != nil {
			return err
		}
		if t.Card != "" && t.Card != card {
			add(Problem{Kind: ProblemIdempotency, Transfer: id, Batch: t.Batch, Operator: rec.Operator, Key: rec.Key,
				Message: fmt.Sprintf("idempotency key %q of operator %s answered transfer %d on card %s, but transfer %d (batch %d) is card %s's",
					rec.Key, rec.Operator, id, card, id, t.Batch, t.Card)})
		}
		return nil
	})
}

// sagaTransfers are the fields of a saga's data that name transfers.
type sagaTransfers struct {
	Hold  int64   `json:"hold"`
	Holds []int64 `json:"holds"`
}

// checkSagas checks that every transfer a saga names ("hold", "holds" in
// its data) exists.
func checkSagas(ctx context.Context, st store.Store, r *Report, exists func(int64) (bool, error), add func(Problem)) error {
	return st.AllSagas(ctx, func(g store.Saga) error {
		r.Sagas++
		var d sagaTransfers
		if json.Unmarshal(g.Data, &d) != nil {
			return nil
		}
		named := d.Holds
		if d.Hold != 0 {
			named = append([]int64{d.Hold}, named...)
		}
		for _, id := range named {
			there, err := exists(id)
			if err != nil {
				return err
			}
			if !there {
				add(Problem{Kind: ProblemSaga, Transfer: id, Operator: g.Operator, Key: g.Key, Message: fmt.Sprintf(
					"saga %q of %s (%s, %s) names transfer %d, which does not exist", g.Key, g.Operator, g.Kind, g.State, id)})
			}
		}
		return nil
	})
}

// checkCheckpoints compares the store with every checkpoint of the log and
// reports the first one whose batch is missing or differs, with the last
// one that matched.
func checkCheckpoints(ctx context.Context, st store.Store, r *Report, cps *Checkpoints, hashes map[int64][]byte,
	lastSeq int64, add func(Problem)) error {
	started, serr := st.CheckpointStarted(ctx)
	if serr != nil && !errors.Is(serr, store.ErrNotFound) {
		return serr
	}
	never := errors.Is(serr, store.ErrNotFound)
	if le, ok := errors.AsType[*checkpoint.LogError](cps.Err); ok && le.Kind == checkpoint.LogMissing && never {
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"no checkpoint log at %s, and the store records none ever written: nothing outside the database anchors this ledger, "+
				"so a shortened or rolled-back history would pass; run the hub with `citycard serve`, which writes one there, "+
				"or keep the output of `citycard ledger checkpoint`", cps.Source))
		return nil
	}
	if cps.Err != nil {
		msg := cps.Err.Error()
		if le, ok := errors.AsType[*checkpoint.LogError](cps.Err); ok && le.Kind == checkpoint.LogMissing {
			msg = fmt.Sprintf("checkpoint log %s is missing, but the store records that checkpoints began at batch %d (%s) with key %s",
				cps.Source, started.Batch, started.At.Format(time.RFC3339), started.KeyName)
		}
		p := Problem{Kind: ProblemCheckpointLog, Message: msg}
		if le, ok := errors.AsType[*checkpoint.LogError](cps.Err); ok {
			p.Record = le.Record
		}
		add(p)
	}
	if len(cps.Entries) == 0 {
		if cps.Err == nil {
			if never {
				r.Warnings = append(r.Warnings, fmt.Sprintf("checkpoint log %s holds no checkpoint yet", cps.Source))
			} else {
				add(Problem{Kind: ProblemCheckpointLog, Message: fmt.Sprintf(
					"checkpoint log %s is empty, but the store records that checkpoints began at batch %d", cps.Source, started.Batch)})
			}
		}
		return nil
	}
	last := func() string {
		if r.LastMatched == nil {
			return "no earlier checkpoint matched"
		}
		return fmt.Sprintf("the last checkpoint that matched is record %d, batch %d, signed %s",
			r.LastMatched.Record, r.LastMatched.Batch, r.LastMatched.Time.Format(time.RFC3339))
	}
	for _, e := range cps.Entries {
		r.Checkpoints++
		if e.Batch > lastSeq {
			add(Problem{Kind: ProblemStoreBehind, Batch: lastSeq + 1, Record: e.Record, Message: fmt.Sprintf(
				"checkpoint record %d (signed %s) names batch %d, but the store ends at batch %d: batches from %d on are missing "+
					"(a deleted tail, or the database rolled back to an older copy), so the checkpoint log is ahead of the store; %s",
				e.Record, e.Time.Format(time.RFC3339), e.Batch, lastSeq, lastSeq+1, last())})
			return nil
		}
		if h := hashes[e.Batch]; !bytes.Equal(h, e.Hash) {
			add(Problem{Kind: ProblemCheckpointMismatch, Batch: e.Batch, Record: e.Record, Message: fmt.Sprintf(
				"batch %d differs from checkpoint record %d (signed %s): the store's hash is %s, the checkpoint's %s: "+
					"a batch up to %d was rewritten or the database replaced; %s",
				e.Batch, e.Record, e.Time.Format(time.RFC3339), b64(h), b64(e.Hash), e.Batch, last())})
			return nil
		}
		r.LastMatched = &CheckpointSeen{Record: e.Record, Batch: e.Batch, Time: e.Time}
	}
	// The audit head of the newest checkpoint: the store may have more rows
	// since, never fewer, and the same row must keep its hash.
	e := cps.Entries[len(cps.Entries)-1]
	if e.AuditHash != nil && !r.Live {
		h, err := st.Head(ctx)
		if err != nil {
			return err
		}
		switch {
		case h.LastAudit < e.Audit:
			add(Problem{Kind: ProblemAuditBehind, Audit: h.LastAudit + 1, Record: e.Record, Message: fmt.Sprintf(
				"checkpoint record %d names audit row %d, but the store's audit log ends at row %d: rows from %d on are missing",
				e.Record, e.Audit, h.LastAudit, h.LastAudit+1)})
		case h.LastAudit == e.Audit && !bytes.Equal(h.AuditHash, e.AuditHash):
			add(Problem{Kind: ProblemAuditBehind, Audit: e.Audit, Record: e.Record, Message: fmt.Sprintf(
				"audit row %d: its hash differs from checkpoint record %d's: the audit log was rewritten", e.Audit, e.Record)})
		}
	}
	return nil
}

func b64(b []byte) string {
	if b == nil {
		return "(none)"
	}
	return base64.StdEncoding.EncodeToString(b)
}
