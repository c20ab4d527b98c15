package faulttest

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation of the history does.
type Kind int

// Kinds of operations.
const (
	TopUp Kind = iota // the setup's top-up of a card
	Pay               // a payment of Amount
	Read              // a read of the card's cash balance
)

// Outcomes of a payment.
const (
	Approved = "approved"
	Declined = "declined"
	Unknown  = "unknown" // no definite answer however often re-sent
)

// Op is one operation as a client saw it.
type Op struct {
	Client   int
	Kind     Kind
	Card     string
	Amount   int64
	Key      string // the payment's Idempotency-Key
	Call     int64  // ns since the history began, at the first send
	Return   int64  // ns at the definite answer; math.MaxInt64 if none
	Outcome  string
	ID       string // the transfer id of an approved payment
	Reason   string // a decline's reason
	Replayed bool   // the approval came with Idempotent-Replayed: true
	Balance  int64  // what a read saw
	Attempts int
}

// History is the client-side history of a run.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

func (h *History) now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops is a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Counts sums the payments of the history by outcome.
func (h *History) Counts() (payments, approved, declined, unknown int) {
	for _, op := range h.Ops() {
		if op.Kind != Pay {
			continue
		}
		payments++
		switch op.Outcome {
		case Approved:
			approved++
		case Declined:
			declined++
		default:
			unknown++
		}
	}
	return
}

// The model is one card's cash balance. Payments are resolved through
// re-sends with the same key, so an operation is one logical payment from
// its first send to its definite answer: the hub may have applied it at
// any moment in that interval (a lost try included), and that is exactly
// the interval porcupine lets it take effect in. A payment that never got
// a definite answer has Return = +inf and is stepped as "applied if the
// money was there": porcupine may then place it anywhere after its call,
// at the very end included, which is the same as "never happened" for
// every read. So the model checks that an approved payment takes effect
// once, a decline only when the money was short, and that every read shows
// exactly the approved payments linearized before it: never money later
// un-charged, never missing money answered approved.
type modelIn struct {
	kind   Kind
	amount int64
}

type modelOut struct {
	outcome string
	balance int64
}

// Model is the porcupine model of card balances, partitioned by card.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			card := op.Metadata.(string)
			if _, ok := by[card]; !ok {
				order = append(order, card)
			}
			by[card] = append(by[card], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, c := range order {
			out = append(out, by[c])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		bal, in, out := state.(int64), input.(modelIn), output.(modelOut)
		switch in.kind {
		case TopUp:
			return true, bal + in.amount
		case Read:
			return out.balance == bal, bal
		}
		switch out.outcome {
		case Approved:
			return bal >= in.amount, bal - in.amount
		case Declined:
			return bal < in.amount, bal
		default:
			if bal >= in.amount {
				return true, bal - in.amount
			}
			return true, bal
		}
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(modelIn), output.(modelOut)
		switch in.kind {
		case TopUp:
			return fmt.Sprintf("topup(%d)", in.amount)
		case Read:
			return fmt.Sprintf("read() → %d", out.balance)
		}
		return fmt.Sprintf("pay(%d) → %s", in.amount, out.outcome)
	},
	DescribeState:             func(state any) string { return fmt.Sprint(state.(int64)) },
	DescribeOperationMetadata: func(info any) string { return "card " + info.(string) },
}

// Operations turns the history into porcupine's form.
func (h *History) Operations() []porcupine.Operation {
	ops := h.Ops()
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.Return
		if op.Outcome == Unknown {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client + 1, // the probe is client -1
			Input:    modelIn{kind: op.Kind, amount: op.Amount},
			Call:     op.Call,
			Output:   modelOut{outcome: op.Outcome, balance: op.Balance},
			Return:   ret,
			Metadata: op.Card,
		})
	}
	return out
}

// CheckLinearizable checks the history against Model, and on a violation
// writes porcupine's visualization beside the test's output and fails t.
// A check that does not finish within timeout is logged, not failed.
func CheckLinearizable(t testing.TB, h *History, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	ops := h.Operations()
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	switch res {
	case porcupine.Ok:
		t.Logf("porcupine: %d operations linearizable (%v)", len(ops), time.Since(start).Round(time.Millisecond))
	case porcupine.Unknown:
		t.Logf("porcupine: no verdict on %d operations within %v", len(ops), timeout)
	default:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("citycard-fault-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(Model, info, path); err != nil {
			path = "(visualization failed: " + err.Error() + ")"
		}
		t.Errorf("porcupine: the client history of %d operations is not linearizable against card balances; visualization: %s", len(ops), path)
	}
}
