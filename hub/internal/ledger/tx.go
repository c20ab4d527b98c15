package ledger

import (
	"fmt"
	"math"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
)

// Op is one request to the single writer. Prefetch names the rows Apply will
// read so that the engine loads a whole batch's rows in one round trip per
// kind; Apply runs on the writer goroutine against the in-memory state and
// must not block. An Apply that returns an error leaves no trace: the engine
// rolls back everything it changed.
type Op interface {
	Prefetch(k *Keys)
	Apply(tx *Tx) (any, error)
}

// Keys lists rows an op reads.
type Keys struct {
	Accounts []string
	Cards    []string
	Holds    []int64
	// Transfers an op may reverse: the engine learns whether each already
	// has a reversal, so that a transfer is never reversed twice.
	Reversals []int64
	// Transit: taps already posted, cards whose fare state the op reads,
	// and devices.
	Taps    []store.TapKey
	Riders  []string
	Devices []string
}

// Reversal adds transfers the op may reverse.
func (k *Keys) Reversal(ids ...int64) { k.Reversals = append(k.Reversals, ids...) }

// Account adds account codes.
func (k *Keys) Account(codes ...string) { k.Accounts = append(k.Accounts, codes...) }

// Card adds card numbers.
func (k *Keys) Card(numbers ...string) { k.Cards = append(k.Cards, numbers...) }

// Hold adds hold ids.
func (k *Keys) Hold(ids ...int64) { k.Holds = append(k.Holds, ids...) }

// Tx is the view an op has of the ledger while it runs on the writer.
// Changes are applied to the engine's state at once and undone if the op
// fails; they reach the database with the rest of the batch.
type Tx struct {
	e   *Engine
	b   *pending
	now time.Time

	// first-touch snapshots for undo when this op fails
	accSnap  []accountSnap
	accBuf   [4]accountSnap // backs accSnap: most ops touch two or three accounts
	cardSnap map[string]store.Card
	holdSnap map[int64]store.Hold
	newAcc   []string
	newCards []string
	newHolds []int64
	reversed []int64
	// keys this op first added to the batch's dirty sets
	addTouched       []string
	addCards         []string
	addHolds         []int64
	serialWasChanged bool
	serialTaken      bool
	mark             batchMark
	serial           int64
	tu               transitUndo
}

// Now is the time the batch is stamped with.
func (tx *Tx) Now() time.Time { return tx.now }

// Account returns the account with this code, or nil. The pointer is valid
// for the rest of Apply; change it only through Post.
func (tx *Tx) Account(code string) *store.Account { return tx.e.accounts[code] }

// EnsureAccount returns the account with a.Code, creating it from a if it
// does not exist yet.
func (tx *Tx) EnsureAccount(a store.Account) *store.Account {
	if acc := tx.e.accounts[a.Code]; acc != nil {
		return acc
	}
	tx.e.head.LastAccount++
	a.ID = tx.e.head.LastAccount
	a.CreatedAt = tx.now
	a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending = 0, 0, 0, 0
	acc := &a
	tx.e.accounts[a.Code] = acc
	tx.e.byID[a.ID] = acc
	tx.newAcc = append(tx.newAcc, a.Code)
	tx.b.created[a.Code] = true
	tx.b.touched[a.Code] = acc
	return acc
}

// Card returns a copy of the card, and false if there is none.
func (tx *Tx) Card(number string) (store.Card, bool) {
	c := tx.e.cards[number]
	if c == nil {
		return store.Card{}, false
	}
	return *c, true
}

// PutCard stores a changed card.
func (tx *Tx) PutCard(c store.Card) {
	old := tx.e.cards[c.Number]
	if old == nil {
		tx.newCards = append(tx.newCards, c.Number)
		tx.b.newCards[c.Number] = true
		if c.IssuedAt.IsZero() {
			c.IssuedAt = tx.now
		}
	} else if _, ok := tx.cardSnap[c.Number]; !ok {
		if tx.cardSnap == nil {
			tx.cardSnap = map[string]store.Card{}
		}
		tx.cardSnap[c.Number] = *old
	}
	c.UpdatedAt = tx.now
	cc := c
	tx.e.cards[c.Number] = &cc
	if !tx.b.cards[c.Number] {
		tx.addCards = append(tx.addCards, c.Number)
	}
	tx.b.cards[c.Number] = true
}

// NextCardSerial reserves the next card serial number.
func (tx *Tx) NextCardSerial() int64 {
	if !tx.serialTaken {
		tx.serialTaken = true
		tx.serial = tx.e.head.CardSerial
		tx.serialWasChanged = tx.b.serialChanged
	}
	tx.e.head.CardSerial++
	tx.b.serialChanged = true
	return tx.e.head.CardSerial
}

// Hold returns a copy of the hold and its pending transfer, and false if
// there is none.
func (tx *Tx) Hold(id int64) (store.Hold, store.Transfer, bool) {
	h := tx.e.holds[id]
	if h == nil {
		return store.Hold{}, store.Transfer{}, false
	}
	return h.Hold, h.Transfer, true
}

// PutHold stores the new state of a hold created by Post with Pending set.
func (tx *Tx) PutHold(h store.Hold) {
	cur := tx.e.holds[h.ID]
	if cur == nil {
		panic(fmt.Sprintf("ledger: PutHold(%d) for a hold that was never posted", h.ID))
	}
	if _, ok := tx.holdSnap[h.ID]; !ok {
		if tx.holdSnap == nil {
			tx.holdSnap = map[int64]store.Hold{}
		}
		tx.holdSnap[h.ID] = cur.Hold
	}
	h.UpdatedAt = tx.now
	cur.Hold = h
	if !tx.b.holds[h.ID] {
		tx.addHolds = append(tx.addHolds, h.ID)
	}
	tx.b.holds[h.ID] = true
}

// Post validates and applies a transfer: every entry's account must exist,
// the entries must balance, and no constrained account may end below its
// limit. It assigns and returns the transfer id. A pending transfer moves
// pending totals and opens a hold (Hold.ExpiresAt taken from expires).
func (tx *Tx) Post(t store.Transfer, expires time.Time) (int64, error) {
	invariant(len(t.Entries) >= 2, "a %s transfer has %d entries, needs two or more", t.Kind, len(t.Entries))
	var sum, debits int64
	for _, en := range t.Entries {
		invariant(en.Amount != 0, "a %s transfer has a zero entry", t.Kind)
		invariant(tx.e.byID[en.Account] != nil, "a %s transfer names account %d, which the writer does not hold", t.Kind, en.Account)
		var ok bool
		if sum, ok = CheckedAdd(sum, en.Amount); !ok || en.Amount == math.MinInt64 {
			return 0, errOverflow
		}
		if en.Amount > 0 {
			if debits, ok = CheckedAdd(debits, en.Amount); !ok {
				return 0, errOverflow
			}
		}
	}
	invariant(sum == 0, "a %s transfer does not balance: its entries sum to %d", t.Kind, sum)
	// A transfer is reversed at most once; the op names it in
	// Keys.Reversals so that the engine knows.
	if t.Kind == store.TransferReversal && (t.Ref == 0 || tx.e.reversed[t.Ref]) {
		return 0, fault.E(fault.AlreadyReversed, "transfer", fmt.Sprintf("transfer %d is already reversed", t.Ref))
	}
	if n := tx.applyChecked(t.Entries, t.Pending); n < len(t.Entries) {
		tx.apply(t.Entries[:n], t.Pending, -1)
		return 0, errOverflow
	}
	for _, en := range t.Entries {
		acc := tx.e.byID[en.Account]
		if acc.Constrained && Available(*acc) < -acc.NegativeLimit {
			tx.apply(t.Entries, t.Pending, -1)
			return 0, fault.E(fault.InsufficientFunds, "", fmt.Sprintf("account %s would fall below its limit", acc.Code))
		}
	}
	if t.Kind == store.TransferReversal {
		tx.e.reversed[t.Ref] = true
		tx.reversed = append(tx.reversed, t.Ref)
	}
	tx.e.head.LastTransfer++
	t.ID = tx.e.head.LastTransfer
	t.At = tx.now
	if t.Amount == 0 {
		t.Amount = debits
	}
	tx.b.transfers = append(tx.b.transfers, t)
	if t.Pending {
		h := &heldTransfer{Hold: store.Hold{
			ID: t.ID, Card: t.Card, Merchant: t.Merchant, Amount: t.Amount, Currency: t.Currency,
			Status: store.HoldPending, ExpiresAt: expires, UpdatedAt: tx.now,
		}, Transfer: t}
		tx.e.holds[t.ID] = h
		tx.newHolds = append(tx.newHolds, t.ID)
		tx.b.holds[t.ID] = true
	}
	return t.ID, nil
}

// Release undoes the pending totals of a hold's transfer: used before a
// capture posts the final amount and when a hold is voided or expires.
func (tx *Tx) Release(pending store.Transfer) {
	tx.apply(pending.Entries, true, -1)
}

// errOverflow refuses an amount that would carry a sum or an account's total
// past int64: wrapped, it would read as a negative balance and be declined,
// or worse, approved.
var errOverflow = fault.E(fault.InvalidAmount, "amount", "the amount is too large: a balance or total would overflow")

// CheckedAdd returns a+b and whether it fits in an int64.
func CheckedAdd(a, b int64) (int64, bool) {
	s := a + b
	// Overflow happened iff both operands share a sign the sum lacks.
	return s, (a >= 0) != (b >= 0) || (s >= 0) == (a >= 0)
}

// applyChecked applies entries to account totals in order, stopping before
// the first that would overflow a total, or an account's debits posted plus
// pending (so that Available cannot wrap either). It returns how many it
// applied; the caller takes those back when it is fewer than all. Totals
// only grow here and never go negative, so one comparison per entry is
// enough.
func (tx *Tx) applyChecked(entries []store.Entry, pendingTotals bool) int {
	for i, en := range entries {
		acc := tx.e.byID[en.Account]
		amt := en.Amount
		if amt < 0 {
			amt = -amt
		}
		var total int64
		switch {
		case en.Amount > 0:
			total = acc.DebitsPosted + acc.DebitsPending
		case pendingTotals:
			total = acc.CreditsPending
		default:
			total = acc.CreditsPosted
		}
		if amt < 0 || total > math.MaxInt64-amt {
			return i
		}
		tx.apply(entries[i:i+1], pendingTotals, 1)
	}
	return len(entries)
}

// apply adds (sign 1) or takes back (sign -1) entries to account totals.
func (tx *Tx) apply(entries []store.Entry, pendingTotals bool, sign int64) {
	for _, en := range entries {
		acc := tx.e.byID[en.Account]
		tx.touch(acc)
		amt := sign * en.Amount
		switch {
		case pendingTotals && en.Amount > 0:
			acc.DebitsPending += amt
		case pendingTotals:
			acc.CreditsPending -= amt
		case en.Amount > 0:
			acc.DebitsPosted += amt
		default:
			acc.CreditsPosted -= amt
		}
	}
}

// Reversed reports whether transfer id has been reversed; the op must name
// it in Keys.Reversals. Post refuses a second reversal in any case; an op
// asks first when that answer must come before its other checks.
func (tx *Tx) Reversed(id int64) bool { return tx.e.reversed[id] }

// AccountByID returns the account with this id, or nil.
func (tx *Tx) AccountByID(id int64) *store.Account { return tx.e.byID[id] }

// accountSnap is an account as it was before the op first changed it.
type accountSnap struct {
	acc   *store.Account
	saved store.Account
}

func (tx *Tx) touch(acc *store.Account) {
	saved := false
	for i := range tx.accSnap {
		if tx.accSnap[i].acc == acc {
			saved = true
			break
		}
	}
	if !saved && !tx.isNew(acc.Code) {
		if tx.accSnap == nil {
			tx.accSnap = tx.accBuf[:0]
		}
		tx.accSnap = append(tx.accSnap, accountSnap{acc: acc, saved: *acc})
	}
	if _, ok := tx.b.touched[acc.Code]; !ok {
		tx.addTouched = append(tx.addTouched, acc.Code)
	}
	tx.b.touched[acc.Code] = acc
}

func (tx *Tx) isNew(code string) bool {
	for _, c := range tx.newAcc {
		if c == code {
			return true
		}
	}
	return false
}

// StartSaga creates a running saga in the same commit as this op's
// postings (a saga already stored under the key is left as it is).
func (tx *Tx) StartSaga(operator, key, kind string, data []byte) {
	tx.b.sagas = append(tx.b.sagas, store.SagaState{Operator: operator, Key: key, Kind: kind, Create: true,
		State: store.SagaRunning, Data: data, At: tx.now})
}

// EndSaga sets a saga's state and data in the same commit as this op's
// postings (the saga row is in the store; see store.SagaState).
func (tx *Tx) EndSaga(operator, key, state string, data []byte) {
	tx.b.sagas = append(tx.b.sagas, store.SagaState{Operator: operator, Key: key, State: state, Data: data, At: tx.now})
}

// Available is what an account may still spend: credits posted less debits
// posted and pending. It is meaningful for credit-normal accounts (purses).
func Available(a store.Account) int64 {
	return a.CreditsPosted - a.DebitsPosted - a.DebitsPending
}

// Balance is the posted balance of a credit-normal account.
func Balance(a store.Account) int64 { return a.CreditsPosted - a.DebitsPosted }

// rollback undoes everything this op changed.
func (tx *Tx) rollback() {
	e := tx.e
	for _, snap := range tx.accSnap {
		*snap.acc = snap.saved
	}
	for _, code := range tx.newAcc {
		acc := e.accounts[code]
		delete(e.accounts, code)
		delete(e.byID, acc.ID)
		delete(tx.b.created, code)
		delete(tx.b.touched, code)
	}
	for num, snap := range tx.cardSnap {
		c := snap
		e.cards[num] = &c
	}
	for _, num := range tx.newCards {
		delete(e.cards, num)
		delete(tx.b.newCards, num)
		delete(tx.b.cards, num)
	}
	for id, snap := range tx.holdSnap {
		e.holds[id].Hold = snap
	}
	for _, id := range tx.newHolds {
		delete(e.holds, id)
		delete(tx.b.holds, id)
	}
	for _, code := range tx.addTouched {
		delete(tx.b.touched, code)
	}
	for _, n := range tx.addCards {
		delete(tx.b.cards, n)
	}
	for _, id := range tx.addHolds {
		delete(tx.b.holds, id)
	}
	for _, id := range tx.reversed {
		delete(e.reversed, id)
	}
	if tx.serialTaken {
		e.head.CardSerial = tx.serial
		tx.b.serialChanged = tx.serialWasChanged
	}
	tx.rollbackTransit()
	tx.b.restore(tx.mark)
	e.head.LastTransfer = tx.mark.lastTransfer
	e.head.LastAccount = tx.mark.lastAccount
}
