package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// benchPurses is how many purse accounts the benchmark spreads payments
// over: enough that a batch touches batchSize distinct purses.
const benchPurses = 20000

// benchStride is the step from one payer to the next; a prime that does not
// divide the number of purses, so consecutive payments come from purses far
// apart and a batch never repeats one.
const benchStride = 7919

// BenchCommit measures CommitBatch on the ledger's hot path: every batch
// holds batchSize payments of two entries each, debiting a purse and
// crediting one hot merchant account, and carries the new totals of every
// account it touched. Consecutive payments come from purses spread over the
// whole table, as real traffic does. It reports transfers/s.
func BenchCommit(b *testing.B, s store.Store, batchSize int) {
	benchCommit(b, s, batchSize, benchStride, false)
}

// BenchCommitRequests is BenchCommit with what the API adds to each payment
// as well: an idempotency record and an audit entry.
func BenchCommitRequests(b *testing.B, s store.Store, batchSize int) {
	benchCommit(b, s, batchSize, benchStride, true)
}

// BenchCommitLocal is BenchCommit with consecutive payments coming from
// neighbouring purses, so a batch's rows share pages: the best case for
// locality, and an upper bound to compare BenchCommit with.
func BenchCommitLocal(b *testing.B, s store.Store, batchSize int) {
	benchCommit(b, s, batchSize, 1, false)
}

func benchCommit(b *testing.B, s store.Store, batchSize, stride int, requests bool) {
	ctx := context.Background()
	now := time.Now()
	purses := max(benchPurses, 2*batchSize)
	if purses%stride == 0 && stride > 1 {
		purses++
	}
	// Account 1 is the merchant; 2..purses+1 are purses with money on them.
	accounts := make([]store.Account, purses+1)
	accounts[0] = store.Account{ID: 1, Code: "merchant:M001", Kind: store.KindMerchant, Currency: "CNY", CreatedAt: now}
	for i := 1; i <= purses; i++ {
		card := fmt.Sprintf("31000%011d", i)
		accounts[i] = store.Account{ID: int64(i + 1), Code: "purse:" + card + ":cash", Kind: store.KindPurse,
			Currency: "CNY", Card: card, Purse: "cash", Constrained: true, CreditsPosted: 1 << 40, CreatedAt: now}
	}
	seq := int64(1)
	hash := sha256.Sum256(nil)
	prev := hash
	commit(b, s, &store.Batch{Record: store.BatchRecord{Seq: seq, Hash: hash[:], At: now}, NewAccounts: accounts})

	var (
		id   int64
		next = 1 // the next purse to pay from
	)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		seq++
		var sb [8]byte
		binary.BigEndian.PutUint64(sb[:], uint64(seq))
		hash = sha256.Sum256(append(prev[:], sb[:]...))
		batch := &store.Batch{
			Record:    store.BatchRecord{Seq: seq, PrevHash: prev[:], Hash: hash[:], Transfers: batchSize, At: now},
			Transfers: make([]store.Transfer, batchSize),
			Accounts:  make([]store.Account, 0, batchSize+1),
		}
		prev = hash
		merchant := &accounts[0]
		for j := range batch.Transfers {
			id++
			p := &accounts[next]
			// A prime stride that does not divide purses visits every purse
			// before it repeats one.
			next = (next-1+stride)%purses + 1
			amount := 100 + id%900
			p.DebitsPosted += amount
			merchant.CreditsPosted += amount
			batch.Transfers[j] = store.Transfer{ID: id, Batch: seq, Kind: store.TransferPayment, Currency: "CNY",
				Card: p.Card, Amount: amount, Channel: "pos", Merchant: "M001", Terminal: "T0001", Operator: "pos-1",
				At: now, Entries: []store.Entry{{Account: p.ID, Amount: amount}, {Account: merchant.ID, Amount: -amount}}}
			batch.Accounts = append(batch.Accounts, *p)
			if requests {
				batch.Idempotency = append(batch.Idempotency, store.IdemRecord{
					IdemKey:     store.IdemKey{Operator: "pos-1", Key: fmt.Sprintf("pay-%020d", id)},
					RequestHash: fmt.Sprintf("%064x", id), Status: 201,
					Response: fmt.Appendf(nil, `{"transfer":%d,"card":%q,"amount":%d,"balance":%d}`, id, p.Card, amount, p.CreditsPosted-p.DebitsPosted),
					At:       now})
				batch.Audit = append(batch.Audit, store.AuditEntry{At: now, Operator: "pos-1", Role: "pos",
					Action: "payments.create", Target: p.Card, Remote: "10.1.2.3:50412", Outcome: "ok"})
			}
		}
		batch.Accounts = append(batch.Accounts, *merchant)
		b.StartTimer()
		if err := s.CommitBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "transfers/s")
}

// benchDevices is how many validators BenchCommitTaps spreads taps over.
const benchDevices = 200

// BenchCommitTaps measures CommitBatch on transit's offline upload path:
// every batch holds batchSize taps from a few devices, each device's next
// sequence numbers, the rider state of every card that tapped and the
// devices' new last seqs. Cards come from a pool of benchPurses, so rider
// states are mostly updates once the pool is warm. It reports taps/s.
func BenchCommitTaps(b *testing.B, s store.Store, batchSize int) {
	ctx := context.Background()
	now := time.Now()
	for i := range benchDevices {
		d := store.Device{ID: fmt.Sprintf("BUS-%04d", i), Operator: "M-BUS", Mode: "bus", Route: "12",
			Key: make([]byte, 32), CreatedAt: now}
		if err := s.AddDevice(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
	var (
		seq    int64
		seqs   = make([]int64, benchDevices)
		dev    int
		card   int
		perDev = max(1, batchSize/10) // an upload holds about ten devices' taps
		state  = []byte(`{"day":"2025-06-01","rides":3,"spent":600,"last_route":"12","last_at":1748770245}`)
		hash   [32]byte
	)
	mk := func() *store.Batch {
		seq++
		prev := hash
		hash = sha256.Sum256(prev[:])
		bt := &store.Batch{
			Record:      store.BatchRecord{Seq: seq, PrevHash: prev[:], Hash: hash[:], At: now},
			Taps:        make([]store.TapRecord, 0, batchSize),
			RiderStates: make([]store.RiderState, 0, batchSize),
		}
		for len(bt.Taps) < batchSize {
			d := fmt.Sprintf("BUS-%04d", dev)
			for j := 0; j < perDev && len(bt.Taps) < batchSize; j++ {
				seqs[dev]++
				c := fmt.Sprintf("31000%011d", card%benchPurses+1)
				card++
				bt.Taps = append(bt.Taps, store.TapRecord{Device: d, Seq: seqs[dev], Card: c, At: now, Kind: "board",
					Route: "12", Stop: "S17", Offline: true, Status: store.TapCharged, Fare: 200, Balance: 4800,
					Transfer: seq*int64(batchSize) + int64(len(bt.Taps)), Batch: seq})
				bt.RiderStates = append(bt.RiderStates, store.RiderState{Card: c, State: state, UpdatedAt: now})
			}
			bt.DeviceSeqs = append(bt.DeviceSeqs, store.DeviceSeq{Device: d, LastSeq: seqs[dev]})
			dev = (dev + 1) % benchDevices
		}
		return bt
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bt := mk()
		b.StartTimer()
		if err := s.CommitBatch(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "taps/s")
}

// BenchLoad measures the engine's hot reads: every op loads n purse
// accounts and n cards by key (LoadAccounts then LoadCards), from keys
// spread over benchPurses of each, as the writer does for a batch's
// requests it has not seen before. It reports keys/s.
func BenchLoad(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	now := time.Now()
	accounts := make([]store.Account, benchPurses)
	cards := make([]store.Card, benchPurses)
	for i := range accounts {
		card := fmt.Sprintf("31000%011d", i+1)
		accounts[i] = store.Account{ID: int64(i + 1), Code: "purse:" + card + ":cash", Kind: store.KindPurse,
			Currency: "CNY", Card: card, Purse: "cash", Constrained: true, CreditsPosted: 5000, CreatedAt: now}
		cards[i] = store.Card{Number: card, Product: "std", Status: store.CardActive, HolderName: "Holder",
			IDType: "resident", IDNumber: fmt.Sprintf("ID%08d", i), Deposit: 2000, Currency: "CNY",
			IssuedAt: now, UpdatedAt: now}
	}
	hash := sha256.Sum256(nil)
	commit(b, s, &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: hash[:], At: now}, NewAccounts: accounts,
		NewCards: cards})
	codes, numbers := make([]string, n), make([]string, n)
	next := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range n {
			codes[j], numbers[j] = accounts[next].Code, cards[next].Number
			next = (next + benchStride) % benchPurses
		}
		as, err := s.LoadAccounts(ctx, codes)
		if err != nil || len(as) != n {
			b.Fatalf("load accounts: %d of %d, %v", len(as), n, err)
		}
		cs, err := s.LoadCards(ctx, numbers)
		if err != nil || len(cs) != n {
			b.Fatalf("load cards: %d of %d, %v", len(cs), n, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n*2)/b.Elapsed().Seconds(), "keys/s")
}
