// Package storetest is the conformance suite every store driver passes, the
// commit benchmark, and helpers that open real stores for other packages'
// tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// RawExecer is implemented by the drivers so the suite can run SQL the Store
// API does not offer, such as an UPDATE on the audit log that must fail.
type RawExecer interface {
	ExecRaw(ctx context.Context, sql string) error
}

// Run runs the suite. open must return a new, empty store each time it is
// called and close it when t ends; the subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EmptyHead", testEmptyHead},
		{"CommitAndRead", testCommitAndRead},
		{"AbsoluteTotalsAndUpdates", testAbsoluteTotalsAndUpdates},
		{"RollbackDuplicateIdempotency", testRollbackDuplicateIdempotency},
		{"RollbackDuplicateInBatch", testRollbackDuplicateInBatch},
		{"RollbackMissingAccount", testRollbackMissingAccount},
		{"RollbackMissingCard", testRollbackMissingCard},
		{"RollbackDuplicateRows", testRollbackDuplicateRows},
		{"RollbackCanceledContext", testRollbackCanceledContext},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"LoadManyKeys", testLoadManyKeys},
		{"LoadEmpty", testLoadEmpty},
		{"ExpiredAndPendingHolds", testExpiredAndPendingHolds},
		{"NotFound", testNotFound},
		{"ReversalOf", testReversalOf},
		{"CardAccounts", testCardAccounts},
		{"TrialBalance", testTrialBalance},
		{"AllAccountsStream", testAllAccountsStream},
		{"BatchesStream", testBatchesStream},
		{"Operators", testOperators},
		{"Audit", testAudit},
		{"AuditAppendOnly", testAuditAppendOnly},
		{"MerchantsTerminals", testMerchantsTerminals},
		{"Products", testProducts},
		{"ConcurrentReadsDuringCommits", testConcurrentReads},
		{"DeadLetters", testDeadLetters},
		{"DeadLetterPages", testDeadLetterPages},
		{"DedupClaims", testDedupClaims},
		{"DedupPurge", testDedupPurge},
		{"DedupConcurrentClaims", testDedupConcurrentClaims},
	}
	tests = append(tests, transitTests...)
	tests = append(tests, sagaTests...)
	tests = append(tests, auditTests...)
	tests = append(tests, verifyTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// Fixture values. t0 has nanoseconds and a non-UTC zone on purpose: stores
// keep microseconds and return UTC.
var (
	t0    = time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.FixedZone("UTC+3", 3*3600))
	card1 = "3100010000000013"
	card2 = "3100010000000021"
)

// norm is what a store returns for t: UTC, truncated to microseconds.
func norm(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

func ctxT(t *testing.T) context.Context { return t.Context() }

// seed returns the first batch of a small ledger: five accounts, one card
// issued and topped up, a payment with three entries, a hold, idempotency
// records, audit entries and the card serial.
func seed() *store.Batch {
	accounts := []store.Account{
		{ID: 1, Code: "cash:outlets", Kind: store.KindCash, Currency: "CNY", CreatedAt: t0},
		{ID: 2, Code: "merchant:M001", Kind: store.KindMerchant, Currency: "CNY", CreatedAt: t0},
		{ID: 3, Code: "purse:" + card1 + ":cash", Kind: store.KindPurse, Currency: "CNY", Card: card1, Purse: "cash",
			Constrained: true, CreatedAt: t0},
		{ID: 4, Code: "deposit:" + card1, Kind: store.KindDeposit, Currency: "CNY", Card: card1, CreatedAt: t0},
		{ID: 5, Code: "income:fees", Kind: store.KindIncome, Currency: "CNY", CreatedAt: t0},
		{ID: 6, Code: "purse:" + card1 + ":transit", Kind: store.KindPurse, Currency: "CNY", Card: card1,
			Purse: "transit", Constrained: true, NegativeLimit: 500, CreatedAt: t0},
	}
	transfers := []store.Transfer{
		{ID: 10, Batch: 1, Kind: store.TransferIssue, Currency: "CNY", Card: card1, Amount: 2000, Channel: "counter",
			Operator: "op-1", Memo: "issue", At: t0,
			Entries: []store.Entry{{Account: 1, Amount: 2000}, {Account: 4, Amount: -2000}}},
		// The memo holds what the bulk encodings must escape.
		{ID: 11, Batch: 1, Kind: store.TransferTopUp, Currency: "CNY", Card: card1, Amount: 5000, Channel: "counter",
			Operator: "op-1", Memo: "tab\there\nnew line \\N back\\slash\r 充值", At: t0.Add(time.Second),
			Entries: []store.Entry{{Account: 1, Amount: 5000}, {Account: 3, Amount: -5000}}},
		// Entry order is deliberately not account order.
		{ID: 12, Batch: 1, Kind: store.TransferPayment, Currency: "CNY", Card: card1, Amount: 1200, Channel: "pos",
			Merchant: "M001", Terminal: "T001", Operator: "op-2", At: t0.Add(2 * time.Second),
			Entries: []store.Entry{{Account: 3, Amount: 1200}, {Account: 5, Amount: -20}, {Account: 2, Amount: -1180}}},
		{ID: 13, Batch: 1, Kind: store.TransferHold, Currency: "CNY", Card: card1, Pending: true, Amount: 300,
			Channel: "pos", Merchant: "M001", Terminal: "T001", At: t0.Add(3 * time.Second),
			Entries: []store.Entry{{Account: 3, Amount: 300}, {Account: 2, Amount: -300}}},
	}
	return &store.Batch{
		Record:      store.BatchRecord{Seq: 1, Hash: []byte("hash-1"), Transfers: len(transfers), At: t0},
		NewAccounts: accounts,
		Accounts:    totals(accounts, transfers),
		Transfers:   transfers,
		NewCards: []store.Card{
			{Number: card1, Product: "std", Status: store.CardActive, HolderName: "Li Wei", IDType: "passport",
				IDNumber: "E1234567", Phone: "+8613800000000", PinHash: "pbkdf2$abc", Deposit: 2000, Currency: "CNY",
				IssuedAt: t0, UpdatedAt: t0},
			{Number: card2, Product: "std", Status: store.CardActive, Currency: "CNY", IssuedAt: t0, UpdatedAt: t0},
		},
		Holds: []store.Hold{{ID: 13, Card: card1, Merchant: "M001", Amount: 300, Currency: "CNY",
			Status: store.HoldPending, ExpiresAt: t0.Add(15 * time.Minute), UpdatedAt: t0}},
		Idempotency: []store.IdemRecord{
			{IdemKey: store.IdemKey{Operator: "op-1", Key: "k1"}, RequestHash: "aa", Status: 201,
				Response: []byte(`{"id":10}`), At: t0},
			{IdemKey: store.IdemKey{Operator: "op-1", Key: "k2"}, RequestHash: "bb", Status: 201,
				Response: []byte(`{"id":11}`), At: t0},
			{IdemKey: store.IdemKey{Operator: "op-2", Key: "k1"}, RequestHash: "cc", Status: 402, At: t0},
		},
		Audit: []store.AuditEntry{
			{ID: 999, At: t0, Operator: "op-1", Role: "teller", Action: "cards.issue", Target: card1,
				Remote: "10.0.0.1", Outcome: "ok"},
			{At: t0, Operator: "op-2", Role: "pos", Action: "payments.create", Target: card1, Remote: "10.0.0.2",
				Outcome: "ok", Detail: "amount=1200"},
		},
		CardSerial: 2,
	}
}

// totals applies the transfers' entries to copies of the accounts and
// returns those the transfers touched, as the engine would.
func totals(accounts []store.Account, transfers []store.Transfer) []store.Account {
	byID := make(map[int64]*store.Account, len(accounts))
	out := make([]store.Account, len(accounts))
	copy(out, accounts)
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	touched := map[int64]bool{}
	for _, t := range transfers {
		for _, e := range t.Entries {
			a := byID[e.Account]
			touched[e.Account] = true
			switch {
			case t.Pending && e.Amount > 0:
				a.DebitsPending += e.Amount
			case t.Pending:
				a.CreditsPending -= e.Amount
			case e.Amount > 0:
				a.DebitsPosted += e.Amount
			default:
				a.CreditsPosted -= e.Amount
			}
		}
	}
	var res []store.Account
	for _, a := range out {
		if touched[a.ID] {
			res = append(res, a)
		}
	}
	return res
}

func commit(t testing.TB, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.CommitBatch(context.Background(), b); err != nil {
		t.Fatalf("CommitBatch(%d): %v", b.Record.Seq, err)
	}
}

func normAccount(a store.Account) store.Account { a.CreatedAt = norm(a.CreatedAt); return a }
func normCard(c store.Card) store.Card {
	c.IssuedAt, c.UpdatedAt = norm(c.IssuedAt), norm(c.UpdatedAt)
	return c
}
func normHold(h store.Hold) store.Hold {
	h.ExpiresAt, h.UpdatedAt = norm(h.ExpiresAt), norm(h.UpdatedAt)
	return h
}
func normTransfer(x store.Transfer) store.Transfer { x.At = norm(x.At); return x }
func normIdem(r store.IdemRecord) store.IdemRecord {
	r.At = norm(r.At)
	if len(r.Response) == 0 {
		r.Response = nil
	}
	return r
}

func mustEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func sortAccounts(a []store.Account) { sort.Slice(a, func(i, j int) bool { return a[i].ID < a[j].ID }) }

// finalAccounts is every account of b as it stands after b committed.
func finalAccounts(b *store.Batch) []store.Account {
	m := map[int64]store.Account{}
	for _, a := range b.NewAccounts {
		m[a.ID] = normAccount(a)
	}
	for _, a := range b.Accounts {
		m[a.ID] = normAccount(a)
	}
	var out []store.Account
	for _, a := range m {
		out = append(out, a)
	}
	sortAccounts(out)
	return out
}

func codes(as []store.Account) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Code)
	}
	return out
}

func testEmptyHead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "empty head", h, store.Head{})
	counts, err := s.CountRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"accounts", "transfers", "entries", "cards", "holds", "batches", "idempotency", "audit_log"} {
		if n, ok := counts[tbl]; !ok || n != 0 {
			t.Errorf("CountRows[%s] = %d, %v; want 0, true", tbl, n, ok)
		}
	}
	if d := s.Driver(); d != "sqlite" && d != "postgres" {
		t.Errorf("Driver() = %q", d)
	}
}

func testCommitAndRead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := seed()
	commit(t, s, b)

	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.AuditHash) != 32 { // its value is checked in audit.go
		t.Errorf("head audit hash %x, want 32 bytes", h.AuditHash)
	}
	h.AuditHash = nil
	mustEqual(t, "head", h, store.Head{LastBatch: 1, LastHash: []byte("hash-1"), LastTransfer: 13, LastAccount: 6,
		CardSerial: 2, LastAudit: 2})

	counts, err := s.CountRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "counts", counts, map[string]int64{"accounts": 6, "transfers": 4, "entries": 9, "cards": 2,
		"holds": 1, "batches": 1, "idempotency": 3, "audit_log": 2})

	// Accounts, with one missing code that must simply be absent.
	want := finalAccounts(b)
	got, err := s.LoadAccounts(ctx, append(codes(want), "purse:nope:cash"))
	if err != nil {
		t.Fatal(err)
	}
	sortAccounts(got)
	mustEqual(t, "LoadAccounts", got, want)
	if want[2].DebitsPosted != 1200 || want[2].CreditsPosted != 5000 || want[2].DebitsPending != 300 {
		t.Fatalf("fixture totals wrong: %+v", want[2])
	}

	// Cards.
	cards, err := s.LoadCards(ctx, []string{card2, "nope", card1})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(cards, func(i, j int) bool { return cards[i].Number < cards[j].Number })
	mustEqual(t, "LoadCards", cards, []store.Card{normCard(b.NewCards[0]), normCard(b.NewCards[1])})
	c, err := s.GetCard(ctx, card1)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetCard", c, normCard(b.NewCards[0]))

	// Transfers keep their entries in insert order.
	for _, want := range b.Transfers {
		got, err := s.GetTransfer(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, fmt.Sprintf("GetTransfer(%d)", want.ID), got, normTransfer(want))
	}

	// Holds and idempotency.
	holds, err := s.LoadHolds(ctx, []int64{13, 99})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "LoadHolds", holds, []store.Hold{normHold(b.Holds[0])})
	recs, err := s.LoadIdempotency(ctx, []store.IdemKey{{Operator: "op-2", Key: "k1"}, {Operator: "op-1", Key: "k1"},
		{Operator: "op-2", Key: "k2"}, {Operator: "op-9", Key: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Operator < recs[j].Operator })
	mustEqual(t, "LoadIdempotency", recs, []store.IdemRecord{normIdem(b.Idempotency[0]), normIdem(b.Idempotency[2])})

	// Audit ids come from the database, not from the entry.
	audit, err := s.ListAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 || audit[0].ID != 1 || audit[1].ID != 2 {
		t.Fatalf("ListAudit ids = %+v, want 1, 2", audit)
	}
	wantAudit := b.Audit[1]
	wantAudit.ID, wantAudit.At = 2, norm(wantAudit.At)
	wantAudit.PrevHash, wantAudit.Hash = audit[0].Hash, audit[1].Hash // the chain is checked in audit.go
	mustEqual(t, "audit entry", audit[1], wantAudit)

	// The batch record heads the stream.
	var recsSeen []store.BatchRecord
	err = s.Batches(ctx, func(r store.BatchRecord, ts []store.Transfer) error {
		recsSeen = append(recsSeen, r)
		if len(ts) != 4 {
			t.Errorf("batch %d has %d transfers, want 4", r.Seq, len(ts))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "batch records", recsSeen, []store.BatchRecord{{Seq: 1, Hash: []byte("hash-1"), Transfers: 4, At: norm(t0)}})
}

func testAbsoluteTotalsAndUpdates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b1 := seed()
	commit(t, s, b1)

	later := t0.Add(time.Hour)
	acc := finalAccounts(b1)
	merchant := acc[1]
	// The totals are the new values, not deltas.
	merchant.DebitsPosted, merchant.CreditsPosted, merchant.DebitsPending, merchant.CreditsPending = 7, 8, 9, 10
	c1 := b1.NewCards[0]
	c1.Status, c1.PinTries, c1.PinHash, c1.Phone, c1.UpdatedAt = store.CardLost, 2, "pbkdf2$new", "+8613900000000", later
	c1.ReplacedBy, c1.Deposit, c1.HolderName = card2, 0, "Li Wei II"
	c1.IssuedAt = later // immutable: the store keeps the first value
	hold := b1.Holds[0]
	hold.Status, hold.Captured, hold.UpdatedAt = store.HoldCaptured, 250, later
	newHold := store.Hold{ID: 20, Card: card2, Amount: 50, Currency: "CNY", Status: store.HoldPending,
		ExpiresAt: later.Add(time.Minute), UpdatedAt: later}
	// A hold listed twice keeps its last version, as applying the list in
	// order would.
	staleNew := newHold
	staleNew.Status, staleNew.Amount = store.HoldVoided, 999
	b2 := &store.Batch{
		Record:   store.BatchRecord{Seq: 2, PrevHash: []byte("hash-1"), Hash: []byte("hash-2"), At: later},
		Accounts: []store.Account{merchant},
		Cards:    []store.Card{c1},
		Holds:    []store.Hold{staleNew, hold, newHold},
	}
	commit(t, s, b2)

	got, err := s.LoadAccounts(ctx, []string{merchant.Code})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "merchant totals", got, []store.Account{merchant})

	card, err := s.GetCard(ctx, card1)
	if err != nil {
		t.Fatal(err)
	}
	wantCard := normCard(c1)
	wantCard.IssuedAt = norm(t0)
	mustEqual(t, "updated card", card, wantCard)

	holds, err := s.LoadHolds(ctx, []int64{13, 20})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(holds, func(i, j int) bool { return holds[i].ID < holds[j].ID })
	mustEqual(t, "upserted holds", holds, []store.Hold{normHold(hold), normHold(newHold)})

	// CardSerial 0 leaves the serial alone; a new one replaces it.
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.CardSerial != 2 || h.LastBatch != 2 || !bytes.Equal(h.LastHash, []byte("hash-2")) || h.LastTransfer != 13 {
		t.Fatalf("head after batch 2 = %+v", h)
	}
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 3, PrevHash: []byte("hash-2"), Hash: []byte("hash-3"),
		At: later}, CardSerial: 41})
	if h, err = s.Head(ctx); err != nil || h.CardSerial != 41 || h.LastBatch != 3 {
		t.Fatalf("head after batch 3 = %+v, %v", h, err)
	}
}

// snapshot is everything a failed batch must leave untouched.
type snapshot struct {
	Head     store.Head
	Counts   map[string]int64
	Accounts []store.Account
	Cards    []store.Card
	Holds    []store.Hold
}

func takeSnapshot(t *testing.T, s store.Store) snapshot {
	t.Helper()
	ctx := ctxT(t)
	var sn snapshot
	var err error
	if sn.Head, err = s.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if sn.Counts, err = s.CountRows(ctx); err != nil {
		t.Fatal(err)
	}
	if err = s.AllAccounts(ctx, func(a store.Account) error { sn.Accounts = append(sn.Accounts, a); return nil }); err != nil {
		t.Fatal(err)
	}
	if sn.Cards, err = s.LoadCards(ctx, []string{card1, card2, "3100010000000039"}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(sn.Cards, func(i, j int) bool { return sn.Cards[i].Number < sn.Cards[j].Number })
	if sn.Holds, err = s.PendingHolds(ctx); err != nil {
		t.Fatal(err)
	}
	return sn
}

// failing returns a second batch that writes a bit of everything; the
// caller breaks it in one place.
func failing(b1 *store.Batch) *store.Batch {
	acc := finalAccounts(b1)
	purse, merchant := acc[2], acc[1]
	newAcc := store.Account{ID: 7, Code: "purse:3100010000000039:cash", Kind: store.KindPurse, Currency: "CNY",
		Card: "3100010000000039", Purse: "cash", CreatedAt: t0}
	tr := store.Transfer{ID: 14, Batch: 2, Kind: store.TransferPayment, Currency: "CNY", Card: card1, Amount: 100,
		At: t0, Entries: []store.Entry{{Account: purse.ID, Amount: 100}, {Account: merchant.ID, Amount: -100}}}
	card1 := b1.NewCards[0]
	card1.Status = store.CardFrozen
	hold := b1.Holds[0]
	hold.Status = store.HoldVoided
	return &store.Batch{
		Record:      store.BatchRecord{Seq: 2, PrevHash: []byte("hash-1"), Hash: []byte("hash-2"), Transfers: 1, At: t0},
		NewAccounts: []store.Account{newAcc},
		Accounts:    append(totals([]store.Account{purse, merchant}, []store.Transfer{tr}), newAcc),
		Transfers:   []store.Transfer{tr},
		NewCards: []store.Card{{Number: "3100010000000039", Product: "std", Status: store.CardActive, Currency: "CNY",
			IssuedAt: t0, UpdatedAt: t0}},
		Cards:       []store.Card{card1},
		Holds:       []store.Hold{hold},
		Idempotency: []store.IdemRecord{{IdemKey: store.IdemKey{Operator: "op-1", Key: "k9"}, RequestHash: "dd", At: t0}},
		Audit:       []store.AuditEntry{{At: t0, Operator: "op-1", Action: "payments.create", Outcome: "ok"}},
		CardSerial:  3,
	}
}

// checkRolledBack commits b, expects an error and no change at all, and
// returns the error.
func checkRolledBack(t *testing.T, s store.Store, b *store.Batch) error {
	t.Helper()
	before := takeSnapshot(t, s)
	err := s.CommitBatch(ctxT(t), b)
	if err == nil {
		t.Fatal("CommitBatch succeeded, want an error")
	}
	after := takeSnapshot(t, s)
	mustEqual(t, "state after failed batch", after, before)
	if _, gerr := s.GetTransfer(ctxT(t), 14); !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("transfer of failed batch: err = %v, want ErrNotFound", gerr)
	}
	return err
}

func testRollbackDuplicateIdempotency(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	b2 := failing(b1)
	b2.Idempotency = append(b2.Idempotency, store.IdemRecord{IdemKey: store.IdemKey{Operator: "op-1", Key: "k1"},
		RequestHash: "ee", Status: 200, At: t0})
	err := checkRolledBack(t, s, b2)
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate idempotency key: err = %v, want ErrConflict", err)
	}
	b2.Idempotency = b2.Idempotency[:1]
	commit(t, s, b2)
	h, err := s.Head(ctxT(t))
	if err != nil || h.LastBatch != 2 || h.LastTransfer != 14 || h.LastAccount != 7 || h.CardSerial != 3 || h.LastAudit < 3 {
		t.Fatalf("head after repaired batch = %+v, %v", h, err)
	}
}

func testRollbackDuplicateInBatch(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	b2 := failing(b1)
	b2.Idempotency = append(b2.Idempotency, b2.Idempotency[0])
	if err := checkRolledBack(t, s, b2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate key within batch: err = %v, want ErrConflict", err)
	}
	// A transfer id that already exists fails the batch too.
	b2 = failing(b1)
	b2.Transfers = append(b2.Transfers, b1.Transfers[0])
	checkRolledBack(t, s, b2)
	// So does a batch seq that already exists.
	b2 = failing(b1)
	b2.Record.Seq = 1
	checkRolledBack(t, s, b2)
}

func testRollbackMissingAccount(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	b2 := failing(b1)
	b2.Accounts = append(b2.Accounts, store.Account{ID: 4242, DebitsPosted: 1})
	checkRolledBack(t, s, b2)
}

func testRollbackDuplicateRows(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	b2 := failing(b1)
	b2.Accounts = append(b2.Accounts, b2.Accounts[0])
	checkRolledBack(t, s, b2)
	b2 = failing(b1)
	b2.Cards = append(b2.Cards, b2.Cards[0])
	checkRolledBack(t, s, b2)
}

func testRollbackMissingCard(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	b2 := failing(b1)
	b2.Cards = append(b2.Cards, store.Card{Number: "9999", Status: store.CardLost})
	checkRolledBack(t, s, b2)
}

func testRollbackCanceledContext(t *testing.T, s store.Store) {
	b1 := seed()
	commit(t, s, b1)
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	before := takeSnapshot(t, s)
	if err := s.CommitBatch(ctx, failing(b1)); err == nil {
		t.Fatal("CommitBatch with a canceled context succeeded")
	}
	mustEqual(t, "state after canceled batch", takeSnapshot(t, s), before)
	commit(t, s, failing(b1))
}

func checkUTC(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if got.Location() != time.UTC || !got.Equal(norm(want)) || got != norm(want) {
		t.Errorf("%s = %v (%v), want %v UTC", what, got, got.Location(), norm(want))
	}
}

func testTimeRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	zones := []time.Time{
		time.Date(2031, 12, 31, 23, 59, 59, 999999999, time.FixedZone("UTC-7", -7*3600)),
		time.Date(1999, 1, 2, 3, 4, 5, 6000, time.UTC),
		time.Date(2300, 1, 1, 0, 0, 0, 1000, time.UTC), // beyond int64 nanoseconds
		{}, // the zero time
	}
	for i, at := range zones {
		id := int64(i + 1)
		code := fmt.Sprintf("cash:%d", id)
		num := fmt.Sprintf("card-%d", id)
		b := &store.Batch{
			Record:      store.BatchRecord{Seq: id, Hash: []byte{byte(id)}, At: at},
			NewAccounts: []store.Account{{ID: id, Code: code, Kind: store.KindCash, Currency: "CNY", CreatedAt: at}},
			Transfers:   []store.Transfer{{ID: id, Batch: id, Kind: store.TransferAdjust, Currency: "CNY", At: at}},
			NewCards:    []store.Card{{Number: num, Product: "p", Status: store.CardActive, Currency: "CNY", IssuedAt: at, UpdatedAt: at}},
			Holds:       []store.Hold{{ID: id, Card: num, Currency: "CNY", Status: store.HoldVoided, ExpiresAt: at, UpdatedAt: at}},
			Idempotency: []store.IdemRecord{{IdemKey: store.IdemKey{Operator: "o", Key: code}, At: at}},
			Audit:       []store.AuditEntry{{At: at, Action: "x"}},
		}
		commit(t, s, b)
		accs, err := s.LoadAccounts(ctx, []string{code})
		if err != nil || len(accs) != 1 {
			t.Fatalf("LoadAccounts: %v %v", accs, err)
		}
		checkUTC(t, "account created_at", accs[0].CreatedAt, at)
		tr, err := s.GetTransfer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "transfer at", tr.At, at)
		c, err := s.GetCard(ctx, num)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "card issued_at", c.IssuedAt, at)
		checkUTC(t, "card updated_at", c.UpdatedAt, at)
		hs, err := s.LoadHolds(ctx, []int64{id})
		if err != nil || len(hs) != 1 {
			t.Fatalf("LoadHolds: %v %v", hs, err)
		}
		checkUTC(t, "hold expires_at", hs[0].ExpiresAt, at)
		checkUTC(t, "hold updated_at", hs[0].UpdatedAt, at)
		rs, err := s.LoadIdempotency(ctx, []store.IdemKey{{Operator: "o", Key: code}})
		if err != nil || len(rs) != 1 {
			t.Fatalf("LoadIdempotency: %v %v", rs, err)
		}
		checkUTC(t, "idempotency at", rs[0].At, at)
		if rs[0].Response != nil {
			t.Errorf("empty response read back as %q, want nil", rs[0].Response)
		}
		au, err := s.ListAudit(ctx, id-1, 1)
		if err != nil || len(au) != 1 {
			t.Fatalf("ListAudit: %v %v", au, err)
		}
		checkUTC(t, "audit at", au[0].At, at)

		if err := s.AddMerchant(ctx, store.Merchant{ID: code, Name: "m", CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMerchant(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "merchant created_at", m.CreatedAt, at)
		if err := s.AddTerminal(ctx, store.Terminal{ID: code, Merchant: code, CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
		term, err := s.GetTerminal(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "terminal created_at", term.CreatedAt, at)
		if err := s.AddOperator(ctx, store.Operator{ID: code, Name: code, Role: "admin", CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
		op, err := s.OperatorByName(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "operator created_at", op.CreatedAt, at)
		if err := s.PutProduct(ctx, store.Product{Code: code, Definition: []byte(`{}`), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := s.ListProducts(ctx)
	if err != nil || len(ps) != len(zones) {
		t.Fatalf("ListProducts: %v %v", ps, err)
	}
	for i, p := range ps {
		checkUTC(t, "product created_at", p.CreatedAt, zones[i])
	}
	i := 0
	err = s.Batches(ctx, func(r store.BatchRecord, ts []store.Transfer) error {
		checkUTC(t, "batch at", r.At, zones[i])
		i++
		return nil
	})
	if err != nil || i != len(zones) {
		t.Fatalf("Batches: %d batches, %v", i, err)
	}
}

func testLoadManyKeys(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// Past the drivers' IN-list chunk size of 500, and not a multiple of it.
	const n = 1234
	b := &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}, At: t0}}
	var (
		wantCodes []string
		numbers   []string
		ids       []int64
		keys      []store.IdemKey
	)
	for i := range n {
		id := int64(i + 1)
		code := fmt.Sprintf("purse:%016d:cash", id)
		num := fmt.Sprintf("%016d", id)
		b.NewAccounts = append(b.NewAccounts, store.Account{ID: id, Code: code, Kind: store.KindPurse,
			Currency: "CNY", Card: num, Purse: "cash", CreditsPosted: id, CreatedAt: t0})
		b.NewCards = append(b.NewCards, store.Card{Number: num, Product: "p", Status: store.CardActive,
			Currency: "CNY", IssuedAt: t0, UpdatedAt: t0})
		b.Holds = append(b.Holds, store.Hold{ID: id, Card: num, Amount: id, Currency: "CNY",
			Status: store.HoldPending, ExpiresAt: t0, UpdatedAt: t0})
		k := store.IdemKey{Operator: fmt.Sprintf("op-%d", i%7), Key: fmt.Sprintf("key-%d", i)}
		b.Idempotency = append(b.Idempotency, store.IdemRecord{IdemKey: k, RequestHash: "h", Status: 200,
			Response: []byte("{}"), At: t0})
		if i%3 != 0 {
			wantCodes, numbers, ids, keys = append(wantCodes, code), append(numbers, num), append(ids, id), append(keys, k)
		}
	}
	commit(t, s, b)
	// Missing keys are interleaved with present ones.
	askCodes := slices.Clone(wantCodes)
	askNumbers := slices.Clone(numbers)
	askIDs := slices.Clone(ids)
	askKeys := slices.Clone(keys)
	for i := range 600 {
		askCodes = append(askCodes, fmt.Sprintf("missing-%d", i))
		askNumbers = append(askNumbers, fmt.Sprintf("missing-%d", i))
		askIDs = append(askIDs, int64(100000+i))
		askKeys = append(askKeys, store.IdemKey{Operator: "op-1", Key: fmt.Sprintf("missing-%d", i)})
	}
	accs, err := s.LoadAccounts(ctx, askCodes)
	if err != nil {
		t.Fatal(err)
	}
	got := codes(accs)
	sort.Strings(got)
	mustEqual(t, "LoadAccounts codes", got, wantCodes)
	cards, err := s.LoadCards(ctx, askNumbers)
	if err != nil || len(cards) != len(numbers) {
		t.Fatalf("LoadCards: %d cards, %v; want %d", len(cards), err, len(numbers))
	}
	holds, err := s.LoadHolds(ctx, askIDs)
	if err != nil || len(holds) != len(ids) {
		t.Fatalf("LoadHolds: %d holds, %v; want %d", len(holds), err, len(ids))
	}
	for _, h := range holds {
		if h.Amount != h.ID || h.ID%3 == 1 {
			t.Fatalf("LoadHolds returned %+v", h)
		}
	}
	recs, err := s.LoadIdempotency(ctx, askKeys)
	if err != nil || len(recs) != len(keys) {
		t.Fatalf("LoadIdempotency: %d records, %v; want %d", len(recs), err, len(keys))
	}
	seen := map[store.IdemKey]bool{}
	for _, r := range recs {
		seen[r.IdemKey] = true
	}
	for _, k := range keys {
		if !seen[k] {
			t.Fatalf("LoadIdempotency lost %v", k)
		}
	}
}

func testLoadEmpty(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	commit(t, s, seed())
	if a, err := s.LoadAccounts(ctx, nil); err != nil || len(a) != 0 {
		t.Errorf("LoadAccounts(nil) = %v, %v", a, err)
	}
	if c, err := s.LoadCards(ctx, []string{}); err != nil || len(c) != 0 {
		t.Errorf("LoadCards([]) = %v, %v", c, err)
	}
	if h, err := s.LoadHolds(ctx, nil); err != nil || len(h) != 0 {
		t.Errorf("LoadHolds(nil) = %v, %v", h, err)
	}
	if r, err := s.LoadIdempotency(ctx, nil); err != nil || len(r) != 0 {
		t.Errorf("LoadIdempotency(nil) = %v, %v", r, err)
	}
	// Keys that differ only in which part holds the text must not match.
	if r, err := s.LoadIdempotency(ctx, []store.IdemKey{{Operator: "op-1k1"}, {Operator: "k1", Key: "op-1"}}); err != nil || len(r) != 0 {
		t.Errorf("LoadIdempotency(crossed keys) = %v, %v", r, err)
	}
}

func testExpiredAndPendingHolds(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	now := t0.Add(time.Hour)
	hold := func(id int64, status string, exp time.Duration) store.Hold {
		return store.Hold{ID: id, Card: card1, Merchant: "M001", Amount: id * 10, Currency: "CNY", Status: status,
			ExpiresAt: now.Add(exp), UpdatedAt: t0}
	}
	holds := []store.Hold{
		hold(1, store.HoldPending, -time.Minute),
		hold(2, store.HoldPending, -3*time.Minute),
		hold(3, store.HoldCaptured, -5*time.Minute),
		hold(4, store.HoldPending, time.Minute),
		hold(5, store.HoldPending, -2*time.Minute),
		hold(6, store.HoldPending, 0), // expires exactly now: not yet expired
		hold(7, store.HoldExpired, -time.Hour),
		hold(8, store.HoldVoided, -time.Hour),
	}
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}, At: t0}, Holds: holds})

	ids := func(hs []store.Hold) []int64 {
		var out []int64
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	got, err := s.ExpiredHolds(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ExpiredHolds", ids(got), []int64{2, 5, 1})
	mustEqual(t, "ExpiredHolds[0]", got[0], normHold(holds[1]))
	if got, err = s.ExpiredHolds(ctx, now, 2); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ExpiredHolds limit 2", ids(got), []int64{2, 5})
	if got, err = s.ExpiredHolds(ctx, now, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ExpiredHolds no limit", ids(got), []int64{2, 5, 1})
	if got, err = s.ExpiredHolds(ctx, now.Add(-time.Hour), 10); err != nil || len(got) != 0 {
		t.Fatalf("ExpiredHolds before all = %v, %v", got, err)
	}

	pend, err := s.PendingHolds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := ids(pend)
	slices.Sort(p)
	mustEqual(t, "PendingHolds", p, []int64{1, 2, 4, 5, 6})

	// Expiring a hold moves it out of both lists.
	h := holds[1]
	h.Status = store.HoldExpired
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 2, Hash: []byte{2}, At: t0}, Holds: []store.Hold{h}})
	if got, err = s.ExpiredHolds(ctx, now, 10); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ExpiredHolds after expiry", ids(got), []int64{5, 1})
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	commit(t, s, seed())
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", what, err)
		}
	}
	_, err := s.GetCard(ctx, "nope")
	check("GetCard", err)
	_, err = s.GetTransfer(ctx, 12345)
	check("GetTransfer", err)
	_, err = s.GetMerchant(ctx, "nope")
	check("GetMerchant", err)
	_, err = s.GetTerminal(ctx, "nope")
	check("GetTerminal", err)
	_, err = s.OperatorByName(ctx, "nope")
	check("OperatorByName", err)
	_, err = s.OperatorByTokenHash(ctx, "nope")
	check("OperatorByTokenHash", err)
	_, err = s.OperatorByTokenHash(ctx, "")
	check("OperatorByTokenHash(\"\")", err)
	check("SetOperatorToken", s.SetOperatorToken(ctx, "nope", "abc"))
	check("AddTerminal unknown merchant", s.AddTerminal(ctx, store.Terminal{ID: "T1", Merchant: "nope", CreatedAt: t0}))
	if ts, err := s.ListTerminals(ctx, ""); err != nil || len(ts) != 0 {
		t.Errorf("terminal of unknown merchant was stored: %v %v", ts, err)
	}
	// A transfer without entries reads back with none.
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 2, Hash: []byte{2}, At: t0},
		Transfers: []store.Transfer{{ID: 50, Batch: 2, Kind: store.TransferAdjust, Currency: "CNY", At: t0}}})
	tr, err := s.GetTransfer(ctx, 50)
	if err != nil || len(tr.Entries) != 0 {
		t.Errorf("GetTransfer(50) = %+v, %v", tr, err)
	}
}

func testReversalOf(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := seed()
	commit(t, s, b)
	if id, err := s.ReversalOf(ctx, 12); err != nil || id != 0 {
		t.Fatalf("ReversalOf(12) before reversal = %d, %v", id, err)
	}
	capture := store.Transfer{ID: 14, Batch: 2, Kind: store.TransferCapture, Currency: "CNY", Ref: 13, Amount: 300, At: t0,
		Entries: []store.Entry{{Account: 3, Amount: 300}, {Account: 2, Amount: -300}}}
	rev := store.Transfer{ID: 15, Batch: 2, Kind: store.TransferReversal, Currency: "CNY", Ref: 12, Amount: 1200, At: t0,
		Entries: []store.Entry{{Account: 2, Amount: 1180}, {Account: 5, Amount: 20}, {Account: 3, Amount: -1200}}}
	commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: 2, Hash: []byte{2}, At: t0},
		Transfers: []store.Transfer{capture, rev}})
	if id, err := s.ReversalOf(ctx, 12); err != nil || id != 15 {
		t.Errorf("ReversalOf(12) = %d, %v; want 15", id, err)
	}
	// A capture refers to its hold but does not reverse it.
	if id, err := s.ReversalOf(ctx, 13); err != nil || id != 0 {
		t.Errorf("ReversalOf(13) = %d, %v; want 0", id, err)
	}
	if id, err := s.ReversalOf(ctx, 0); err != nil || id != 0 {
		t.Errorf("ReversalOf(0) = %d, %v; want 0", id, err)
	}
	got, err := s.GetTransfer(ctx, 15)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "reversal", got, normTransfer(rev))
}

func testCardAccounts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := seed()
	commit(t, s, b)
	got, err := s.CardAccounts(ctx, card1)
	if err != nil {
		t.Fatal(err)
	}
	all := finalAccounts(b)
	mustEqual(t, "CardAccounts", got, []store.Account{all[2], all[3], all[5]})
	if got, err = s.CardAccounts(ctx, card2); err != nil || len(got) != 0 {
		t.Errorf("CardAccounts(card2) = %v, %v", got, err)
	}
	if got, err = s.CardAccounts(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("CardAccounts(\"\") = %v, %v; accounts without a card belong to no card", got, err)
	}
}

func testTrialBalance(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	got, err := s.TrialBalance(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty TrialBalance = %v, %v", got, err)
	}
	b := seed()
	commit(t, s, b)
	if got, err = s.TrialBalance(ctx); err != nil {
		t.Fatal(err)
	}
	var want []store.TrialLine
	var debits, credits int64
	for _, a := range finalAccounts(b) {
		want = append(want, store.TrialLine{Code: a.Code, Kind: a.Kind, Debits: a.DebitsPosted, Credits: a.CreditsPosted})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Code < want[j].Code })
	mustEqual(t, "TrialBalance", got, want)
	for _, l := range got {
		debits += l.Debits
		credits += l.Credits
	}
	if debits != credits || debits != 8200 {
		t.Errorf("trial balance debits %d credits %d, want 8200 each", debits, credits)
	}
	// The transit purse has no postings and still has its line.
	if !slices.ContainsFunc(got, func(l store.TrialLine) bool { return l.Code == "purse:"+card1+":transit" }) {
		t.Error("TrialBalance omits an account with zero totals")
	}
}

var errStop = errors.New("stop")

func testAllAccountsStream(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte{1}, At: t0}}
	// Inserted in descending id order; streamed in ascending.
	for id := int64(300); id >= 1; id-- {
		b.NewAccounts = append(b.NewAccounts, store.Account{ID: id, Code: fmt.Sprintf("a%05d", 1000-id),
			Kind: store.KindCash, Currency: "CNY", DebitsPosted: id, CreatedAt: t0})
	}
	commit(t, s, b)
	var got []int64
	err := s.AllAccounts(ctx, func(a store.Account) error {
		got = append(got, a.ID)
		if a.DebitsPosted != a.ID {
			return fmt.Errorf("account %d has debits %d", a.ID, a.DebitsPosted)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 || !slices.IsSorted(got) || got[0] != 1 {
		t.Fatalf("AllAccounts order: %d ids, sorted=%v", len(got), slices.IsSorted(got))
	}
	n := 0
	err = s.AllAccounts(ctx, func(store.Account) error {
		n++
		if n == 10 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || n != 10 {
		t.Fatalf("AllAccounts stop: err %v after %d calls", err, n)
	}
	// The store is usable after an abandoned stream.
	if _, err := s.Head(ctx); err != nil {
		t.Fatal(err)
	}
}

func testBatchesStream(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const batches = 150 // more than one page of batch records
	var (
		want []store.Transfer
		prev []byte
		id   int64
	)
	accs := []store.Account{{ID: 1, Code: "a1", Kind: store.KindCash, Currency: "CNY", CreatedAt: t0},
		{ID: 2, Code: "a2", Kind: store.KindPurse, Currency: "CNY", CreatedAt: t0},
		{ID: 3, Code: "a3", Kind: store.KindIncome, Currency: "CNY", CreatedAt: t0}}
	for seq := int64(1); seq <= batches; seq++ {
		b := &store.Batch{Record: store.BatchRecord{Seq: seq, PrevHash: prev, Hash: []byte(fmt.Sprintf("h%d", seq)),
			At: t0.Add(time.Duration(seq) * time.Second)}}
		if seq == 1 {
			b.NewAccounts = accs
		}
		// Batches carry 0 to 3 transfers, written in descending id order.
		n := int(seq % 4)
		var ts []store.Transfer
		for i := 0; i < n; i++ {
			id++
			ts = append(ts, store.Transfer{ID: id, Batch: seq, Kind: store.TransferAdjust, Currency: "CNY", Amount: id,
				At: t0, Entries: []store.Entry{{Account: 3, Amount: id}, {Account: 1, Amount: -id + 1}, {Account: 2, Amount: -1}}})
		}
		want = append(want, ts...)
		slices.Reverse(ts)
		b.Transfers = ts
		b.Record.Transfers = n
		commit(t, s, b)
		prev = b.Record.Hash
	}
	// Two more batches whose transfer ids interleave: each batch must still
	// get exactly its own transfers and entries.
	for k, ids := range [][]int64{{id + 1, id + 3}, {id + 2, id + 4}} {
		seq := int64(batches + 1 + k)
		b := &store.Batch{Record: store.BatchRecord{Seq: seq, PrevHash: prev, Hash: []byte(fmt.Sprintf("h%d", seq)),
			Transfers: len(ids), At: t0}}
		for _, tid := range ids {
			tr := store.Transfer{ID: tid, Batch: seq, Kind: store.TransferAdjust, Currency: "CNY", Amount: tid, At: t0,
				Entries: []store.Entry{{Account: 2, Amount: tid}, {Account: 1, Amount: -tid}}}
			b.Transfers = append(b.Transfers, tr)
			want = append(want, tr)
		}
		commit(t, s, b)
		prev = b.Record.Hash
	}
	var (
		got    []store.Transfer
		seqs   []int64
		last   []byte
		broken bool
	)
	err := s.Batches(ctx, func(r store.BatchRecord, ts []store.Transfer) error {
		seqs = append(seqs, r.Seq)
		if !bytes.Equal(r.PrevHash, last) || len(ts) != r.Transfers {
			broken = true
		}
		if r.Seq == 1 && r.PrevHash != nil {
			t.Errorf("first batch PrevHash = %q, want nil", r.PrevHash)
		}
		last = r.Hash
		got = append(got, ts...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if broken {
		t.Error("Batches: hash chain or transfer count broken")
	}
	if len(seqs) != batches+2 || !slices.IsSorted(seqs) || seqs[0] != 1 {
		t.Fatalf("Batches streamed seqs %v", seqs)
	}
	for i := range want {
		want[i] = normTransfer(want[i])
	}
	mustEqual(t, "streamed transfers", got, want)

	n := 0
	err = s.Batches(ctx, func(store.BatchRecord, []store.Transfer) error {
		n++
		if n == 70 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || n != 70 {
		t.Fatalf("Batches stop: err %v after %d calls", err, n)
	}
}

func testOperators(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	alice := store.Operator{ID: "op-1", Name: "alice", Role: "admin", TokenHash: "t1", CreatedAt: t0}
	bob := store.Operator{ID: "op-2", Name: "bob", Role: "teller", TokenHash: "t2", Disabled: true, CreatedAt: t0}
	for _, op := range []store.Operator{alice, bob} {
		if err := s.AddOperator(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	conflicts := []store.Operator{
		{ID: "op-1", Name: "carol", Role: "admin", TokenHash: "t3", CreatedAt: t0}, // id
		{ID: "op-3", Name: "alice", Role: "admin", TokenHash: "t3", CreatedAt: t0}, // name
		{ID: "op-3", Name: "carol", Role: "admin", TokenHash: "t1", CreatedAt: t0}, // token
	}
	for _, op := range conflicts {
		if err := s.AddOperator(ctx, op); !errors.Is(err, store.ErrConflict) {
			t.Errorf("AddOperator(%+v): err = %v, want ErrConflict", op, err)
		}
	}
	got, err := s.OperatorByTokenHash(ctx, "t2")
	if err != nil {
		t.Fatal(err)
	}
	bob.CreatedAt = norm(bob.CreatedAt)
	mustEqual(t, "OperatorByTokenHash", got, bob)
	if got, err = s.OperatorByName(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice.CreatedAt = norm(alice.CreatedAt)
	mustEqual(t, "OperatorByName", got, alice)

	if err := s.SetOperatorToken(ctx, "op-1", "t9"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorByTokenHash(ctx, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old token still works: %v", err)
	}
	if got, err = s.OperatorByTokenHash(ctx, "t9"); err != nil || got.ID != "op-1" {
		t.Errorf("new token: %+v, %v", got, err)
	}
	if err := s.SetOperatorToken(ctx, "op-1", "t2"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SetOperatorToken to a taken token: err = %v, want ErrConflict", err)
	}

	// Operators without a token do not collide with each other and are not
	// found by an empty token.
	for _, op := range []store.Operator{{ID: "op-4", Name: "dave", Role: "ops", CreatedAt: t0},
		{ID: "op-5", Name: "erin", Role: "ops", CreatedAt: t0}} {
		if err := s.AddOperator(ctx, op); err != nil {
			t.Fatalf("AddOperator without token: %v", err)
		}
	}
	if _, err := s.OperatorByTokenHash(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OperatorByTokenHash(\"\"): err = %v, want ErrNotFound", err)
	}
	if got, err = s.OperatorByName(ctx, "dave"); err != nil || got.TokenHash != "" {
		t.Errorf("operator without token: %+v, %v", got, err)
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i := range 5 {
		e := store.AuditEntry{ID: 77, At: t0.Add(time.Duration(i) * time.Second), Operator: "op-1", Role: "admin",
			Action: "operators.add", Target: fmt.Sprintf("op-%d", i), Remote: "127.0.0.1", Outcome: "ok", Detail: "d"}
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, s, seed()) // two more entries through the batch
	if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "last", Outcome: "error:internal"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Fatalf("ListAudit(0, 0) returned %d entries, want 8", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("ListAudit ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	if all[0].Target != "op-0" || all[5].Action != "cards.issue" || all[7].Action != "last" {
		t.Errorf("ListAudit order: %+v", all)
	}
	want := store.AuditEntry{ID: all[2].ID, At: norm(t0.Add(2 * time.Second)), Operator: "op-1", Role: "admin",
		Action: "operators.add", Target: "op-2", Remote: "127.0.0.1", Outcome: "ok", Detail: "d",
		PrevHash: all[1].Hash, Hash: all[2].Hash} // the chain is checked in audit.go
	mustEqual(t, "audit entry", all[2], want)

	page, err := s.ListAudit(ctx, all[2].ID, 3)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListAudit page", page, all[3:6])
	if page, err = s.ListAudit(ctx, all[7].ID, 10); err != nil || len(page) != 0 {
		t.Errorf("ListAudit after last = %v, %v", page, err)
	}
	h, err := s.Head(ctx)
	if err != nil || h.LastAudit != all[7].ID {
		t.Errorf("Head.LastAudit = %d, %v; want %d", h.LastAudit, err, all[7].ID)
	}
}

func testAuditAppendOnly(t *testing.T, s store.Store) {
	raw, ok := s.(RawExecer)
	if !ok {
		t.Skipf("%s store does not implement ExecRaw", s.Driver())
	}
	ctx := ctxT(t)
	for i := range 3 {
		if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: fmt.Sprint("a", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The statements themselves are valid: a table without the triggers
	// would accept them.
	if err := raw.ExecRaw(ctx, `CREATE TABLE audit_copy (id INTEGER, outcome TEXT)`); err != nil {
		t.Fatal(err)
	}
	if err := raw.ExecRaw(ctx, `INSERT INTO audit_copy (id, outcome) VALUES (1, 'ok')`); err != nil {
		t.Fatal(err)
	}
	if err := raw.ExecRaw(ctx, `UPDATE audit_copy SET outcome = 'forged' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE audit_log SET outcome = 'forged' WHERE id = 2`,
		`UPDATE audit_log SET outcome = 'forged'`,
		`DELETE FROM audit_log WHERE id = 1`,
		`DELETE FROM audit_log`,
	} {
		err := raw.ExecRaw(ctx, q)
		if err == nil {
			t.Errorf("%s: succeeded, want refusal", q)
			continue
		}
		if !bytes.Contains([]byte(err.Error()), []byte("append-only")) {
			t.Errorf("%s: err = %v, want the append-only refusal", q, err)
		}
	}
	if s.Driver() == "postgres" {
		if err := raw.ExecRaw(ctx, `TRUNCATE audit_log`); err == nil {
			t.Error("TRUNCATE audit_log succeeded, want refusal")
		}
	}
	after, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "audit log after refused writes", after, before)
	// Appending still works.
	if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "after", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
}

func testMerchantsTerminals(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ms := []store.Merchant{
		{ID: "M002", Name: "Noodle Bar", MCC: "5812", FeeRateBps: 150, SettlementAccount: "merchant:M002", CreatedAt: t0},
		{ID: "M001", Name: "Metro", MCC: "4111", FeeRateBps: 0, SettlementAccount: "merchant:M001", CreatedAt: t0},
	}
	for _, m := range ms {
		if err := s.AddMerchant(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMerchant(ctx, store.Merchant{ID: "M001", Name: "Other", CreatedAt: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate merchant: err = %v, want ErrConflict", err)
	}
	got, err := s.GetMerchant(ctx, "M002")
	if err != nil {
		t.Fatal(err)
	}
	want := ms[0]
	want.CreatedAt = norm(want.CreatedAt)
	mustEqual(t, "GetMerchant", got, want)
	list, err := s.ListMerchants(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "M001" || list[1].ID != "M002" {
		t.Fatalf("ListMerchants = %+v, %v; want M001, M002", list, err)
	}
	mustEqual(t, "ListMerchants[1]", list[1], want)

	terms := []store.Terminal{{ID: "T3", Merchant: "M001", CreatedAt: t0}, {ID: "T1", Merchant: "M002", CreatedAt: t0},
		{ID: "T2", Merchant: "M001", CreatedAt: t0}}
	for _, tm := range terms {
		if err := s.AddTerminal(ctx, tm); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddTerminal(ctx, store.Terminal{ID: "T1", Merchant: "M001", CreatedAt: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate terminal: err = %v, want ErrConflict", err)
	}
	tm, err := s.GetTerminal(ctx, "T1")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetTerminal", tm, store.Terminal{ID: "T1", Merchant: "M002", CreatedAt: norm(t0)})
	ids := func(ts []store.Terminal) []string {
		var out []string
		for _, x := range ts {
			out = append(out, x.ID)
		}
		return out
	}
	all, err := s.ListTerminals(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListTerminals(all)", ids(all), []string{"T1", "T2", "T3"})
	m1, err := s.ListTerminals(ctx, "M001")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListTerminals(M001)", ids(m1), []string{"T2", "T3"})
	if none, err := s.ListTerminals(ctx, "M404"); err != nil || len(none) != 0 {
		t.Errorf("ListTerminals(M404) = %v, %v", none, err)
	}
}

func testProducts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if ps, err := s.ListProducts(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("empty ListProducts = %v, %v", ps, err)
	}
	std := store.Product{Code: "std", Definition: []byte(`{"purses": ["cash", "transit"],  "deposit": 2000}`), CreatedAt: t0}
	kid := store.Product{Code: "kid", Definition: []byte(`{"purses":["cash"]}`), CreatedAt: t0.Add(time.Minute)}
	for _, p := range []store.Product{std, kid} {
		if err := s.PutProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := s.ListProducts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kid.CreatedAt, std.CreatedAt = norm(kid.CreatedAt), norm(std.CreatedAt)
	// The definition comes back byte for byte.
	mustEqual(t, "ListProducts", ps, []store.Product{kid, std})

	std2 := store.Product{Code: "std", Definition: []byte(`{"purses":["cash"],"deposit":3000}`), CreatedAt: t0.Add(time.Hour)}
	if err := s.PutProduct(ctx, std2); err != nil {
		t.Fatal(err)
	}
	if ps, err = s.ListProducts(ctx); err != nil || len(ps) != 2 {
		t.Fatalf("ListProducts after upsert = %v, %v", ps, err)
	}
	mustEqual(t, "upserted product", ps[1], store.Product{Code: "std", Definition: std2.Definition, CreatedAt: norm(t0)})
}

func testConcurrentReads(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b := seed()
	commit(t, s, b)
	acc := finalAccounts(b)
	purse, merchant := acc[2], acc[1]
	base0, base1 := purse, merchant // the readers' copies; the writer moves purse and merchant on
	const batches = 30
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for {
				select {
				case <-done:
					return
				default:
				}
				h, err := s.Head(ctx)
				if err != nil {
					errs <- err
					return
				}
				if h.LastBatch < last {
					errs <- fmt.Errorf("reader %d: head went back from %d to %d", r, last, h.LastBatch)
					return
				}
				last = h.LastBatch
				accs, err := s.LoadAccounts(ctx, []string{base0.Code, base1.Code})
				if err != nil || len(accs) != 2 {
					errs <- fmt.Errorf("reader %d: LoadAccounts %v %v", r, accs, err)
					return
				}
				// Every committed batch is in balance: the purse's debits
				// equal the merchant's credits plus the fixed seed amounts.
				var p, m store.Account
				for _, a := range accs {
					if a.ID == base0.ID {
						p = a
					} else {
						m = a
					}
				}
				if p.DebitsPosted-base0.DebitsPosted != m.CreditsPosted-base1.CreditsPosted {
					errs <- fmt.Errorf("reader %d: torn read %+v %+v", r, p, m)
					return
				}
			}
		}()
	}
	id := int64(100)
	for seq := int64(2); seq < 2+batches; seq++ {
		var ts []store.Transfer
		for range 10 {
			id++
			ts = append(ts, store.Transfer{ID: id, Batch: seq, Kind: store.TransferPayment, Currency: "CNY", Amount: 1,
				At: t0, Entries: []store.Entry{{Account: purse.ID, Amount: 1}, {Account: merchant.ID, Amount: -1}}})
		}
		upd := totals([]store.Account{purse, merchant}, ts)
		purse, merchant = upd[0], upd[1]
		commit(t, s, &store.Batch{Record: store.BatchRecord{Seq: seq, Hash: []byte{byte(seq)}, At: t0},
			Accounts: upd, Transfers: ts})
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h, err := s.Head(ctx)
	if err != nil || h.LastBatch != 1+batches || h.LastTransfer != id {
		t.Fatalf("head after concurrent commits = %+v, %v", h, err)
	}
}
