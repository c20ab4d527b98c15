package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// letter returns a dead letter of handler h and message uuid u with every
// field set, in the shapes a store must keep as they are.
func letter(h, u string, i int) store.DeadLetter {
	return store.DeadLetter{
		ID: 999, Handler: h, Topic: "plugin.tollgate.passage", MessageUUID: u,
		Payload: []byte{0, 1, 2, byte(i), 0xff},
		Metadata: map[string]string{
			"correlation_id": fmt.Sprintf("c-%d", i), "idempotency_key": "k-" + u,
			"odd": "tab\tquote\" nul\x00 新 \\N",
		},
		Reason:   fmt.Sprintf("attempt 3: partner down | line two %d", i),
		Code:     "CC-5031",
		Attempts: 3,
		FailedAt: t0.Add(time.Duration(i) * time.Second),
		Replays:  7, // ignored by Put
	}
}

// stored is what a store returns for l put under id.
func stored(l store.DeadLetter, id int64) store.DeadLetter {
	l.ID, l.FailedAt, l.ReplayedAt, l.Replays = id, norm(l.FailedAt), nil, 0
	if len(l.Payload) == 0 {
		l.Payload = nil
	}
	if len(l.Metadata) == 0 {
		l.Metadata = nil
	}
	return l
}

func putLetter(t *testing.T, s store.Store, l store.DeadLetter) int64 {
	t.Helper()
	id, err := s.PutDeadLetter(ctxT(t), l)
	if err != nil {
		t.Fatalf("PutDeadLetter(%s, %s): %v", l.Handler, l.MessageUUID, err)
	}
	return id
}

func testDeadLetters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	l1, l2 := letter("fares", "u1", 1), letter("fares", "u2", 2)
	bare := store.DeadLetter{Handler: "fares", Topic: "t", MessageUUID: "u3", Payload: []byte{},
		Metadata: map[string]string{}, FailedAt: t0}
	id1, id2, id3 := putLetter(t, s, l1), putLetter(t, s, l2), putLetter(t, s, bare)
	if id1 <= 0 || id2 <= id1 || id3 <= id2 {
		t.Fatalf("IDs %d, %d, %d: want positive and increasing", id1, id2, id3)
	}
	// Delivered again, with other contents: the first letter stands.
	again := letter("fares", "u1", 9)
	if id := putLetter(t, s, again); id != id1 {
		t.Fatalf("second Put of fares/u1 returned ID %d, want %d", id, id1)
	}
	// The same message failed by another handler is a letter of its own.
	other := letter("audit", "u1", 4)
	id4 := putLetter(t, s, other)
	if id4 <= id3 {
		t.Fatalf("letter of another handler got ID %d, want above %d", id4, id3)
	}

	all, err := s.ListDeadLetters(ctx, store.DeadLetterPage{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "all dead letters", all, []store.DeadLetter{
		stored(l1, id1), stored(l2, id2), stored(bare, id3), stored(other, id4)})
	got, err := s.GetDeadLetter(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetDeadLetter", got, stored(l2, id2))

	// Replays are counted; ReplayedAt is the last one.
	at1, at2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	for _, at := range []time.Time{at1, at2} {
		if err := s.MarkDeadLetterReplayed(ctx, id2, at); err != nil {
			t.Fatal(err)
		}
	}
	want := stored(l2, id2)
	ra := norm(at2)
	want.ReplayedAt, want.Replays = &ra, 2
	got, err = s.GetDeadLetter(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	checkUTC(t, "ReplayedAt", *got.ReplayedAt, at2)
	mustEqual(t, "replayed letter", got, want)
	if got, _ := s.GetDeadLetter(ctx, id1); got.ReplayedAt != nil || got.Replays != 0 {
		t.Errorf("a replay of %d marked %d: %+v", id2, id1, got)
	}

	missing := id4 + 100
	if _, err := s.GetDeadLetter(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeadLetter(%d) = %v, want ErrNotFound", missing, err)
	}
	if err := s.MarkDeadLetterReplayed(ctx, missing, at1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkDeadLetterReplayed(%d) = %v, want ErrNotFound", missing, err)
	}

	// What one driver cannot store, none takes.
	for _, bad := range []store.DeadLetter{
		{Handler: "fares", Topic: "t", MessageUUID: "nul", Reason: "bad byte \x00 here", FailedAt: t0},
		{Handler: "fa\x00res", Topic: "t", MessageUUID: "nul", FailedAt: t0},
		{Handler: "fares", Topic: "t", MessageUUID: "neg", Attempts: -1, FailedAt: t0},
	} {
		if _, err := s.PutDeadLetter(ctx, bad); err == nil {
			t.Errorf("PutDeadLetter(%+v) succeeded, want refusal", bad)
		}
	}
	if after, err := s.ListDeadLetters(ctx, store.DeadLetterPage{}); err != nil || len(after) != len(all) {
		t.Errorf("after refused puts: %d letters, %v; want %d", len(after), err, len(all))
	}
}

func testDeadLetterPages(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var ids []int64
	for i := range 7 {
		ids = append(ids, putLetter(t, s, letter("h", fmt.Sprint("u", i), i)))
	}
	list := func(p store.DeadLetterPage) []int64 {
		t.Helper()
		ls, err := s.ListDeadLetters(ctx, p)
		if err != nil {
			t.Fatalf("ListDeadLetters(%+v): %v", p, err)
		}
		out := []int64{}
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out
	}
	rev := []int64{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
	for _, c := range []struct {
		p    store.DeadLetterPage
		want []int64
	}{
		{store.DeadLetterPage{}, ids},
		{store.DeadLetterPage{Limit: 3}, ids[:3]},
		{store.DeadLetterPage{Cursor: ids[2], Limit: 3}, ids[3:6]},
		{store.DeadLetterPage{Cursor: ids[5], Limit: 3}, ids[6:]},
		{store.DeadLetterPage{Cursor: ids[6], Limit: 3}, []int64{}},
		{store.DeadLetterPage{Cursor: ids[3]}, ids[4:]},
		{store.DeadLetterPage{NewestFirst: true}, rev},
		{store.DeadLetterPage{NewestFirst: true, Limit: 3}, rev[:3]},
		{store.DeadLetterPage{NewestFirst: true, Cursor: rev[2], Limit: 3}, rev[3:6]},
		{store.DeadLetterPage{NewestFirst: true, Cursor: rev[5], Limit: 3}, rev[6:]},
		{store.DeadLetterPage{NewestFirst: true, Cursor: ids[0]}, []int64{}},
		{store.DeadLetterPage{NewestFirst: true, Cursor: ids[6] + 1000, Limit: 2}, rev[:2]},
	} {
		mustEqual(t, fmt.Sprintf("page %+v", c.p), list(c.p), c.want)
	}
}

// claimer claims and releases bus keys of one store at a clock the test
// moves.
type claimer struct {
	t *testing.T
	s store.Store
}

func (c claimer) claim(key, holder string, at, until time.Time, want bool) {
	c.t.Helper()
	got, err := c.s.ClaimDedupKey(ctxT(c.t), store.DedupClaim{Key: key, Holder: holder, At: at, Until: until})
	if err != nil || got != want {
		c.t.Fatalf("ClaimDedupKey(%s by %s at +%s) = %v, %v; want %v", key, holder, at.Sub(t0), got, err, want)
	}
}

func (c claimer) complete(key string, at, until time.Time) {
	c.t.Helper()
	if err := c.s.CompleteDedupKey(ctxT(c.t), key, at, until); err != nil {
		c.t.Fatalf("CompleteDedupKey(%s): %v", key, err)
	}
}

func (c claimer) release(key, holder string) {
	c.t.Helper()
	if err := c.s.ReleaseDedupKey(ctxT(c.t), key, holder); err != nil {
		c.t.Fatalf("ReleaseDedupKey(%s by %s): %v", key, holder, err)
	}
}

func testDedupClaims(t *testing.T, s store.Store) {
	c := claimer{t, s}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	lease, window := time.Minute, time.Hour

	c.claim("fares/k1", "A", at(0), at(lease), true)
	c.claim("fares/k1", "B", at(30*time.Second), at(30*time.Second+lease), false) // in flight
	c.claim("fares/k1", "A", at(31*time.Second), at(31*time.Second+lease), false) // its holder too
	c.claim("audit/k1", "B", at(31*time.Second), at(31*time.Second+lease), true)  // keys are exact
	c.release("fares/k1", "B")                                                    // not B's claim
	c.claim("fares/k1", "C", at(32*time.Second), at(32*time.Second+lease), false)
	c.release("fares/k1", "A")
	c.claim("fares/k1", "B", at(40*time.Second), at(40*time.Second+lease), true) // a failed attempt is forgotten

	done := at(50 * time.Second)
	c.complete("fares/k1", done, done.Add(window))
	c.release("fares/k1", "B") // completed: stays
	c.claim("fares/k1", "C", done.Add(window-time.Microsecond), done.Add(window+lease), false)
	c.claim("fares/k1", "C", done.Add(window), done.Add(window+lease), true) // the window passed

	// A claim whose holder died lapses with its lease; the late holder
	// cannot then release the new claim.
	c.claim("fares/k2", "A", at(0), at(lease), true)
	c.claim("fares/k2", "B", at(lease-time.Microsecond), at(2*lease), false)
	c.claim("fares/k2", "B", at(lease), at(2*lease), true)
	c.release("fares/k2", "A")
	c.claim("fares/k2", "C", at(lease+time.Second), at(2*lease+time.Second), false)
	// The late holder's completion counts: its handler's effect happened.
	c.complete("fares/k2", at(lease+2*time.Second), at(lease+2*time.Second+window))
	c.claim("fares/k2", "C", at(3*lease), at(4*lease), false)

	// A key completed without a claim (purged meanwhile) is remembered.
	c.complete("fares/k3", at(0), at(window))
	c.claim("fares/k3", "A", at(time.Second), at(time.Second+lease), false)

	ctx := ctxT(t)
	for _, bad := range []store.DedupClaim{
		{Key: "", Holder: "A", At: at(0), Until: at(lease)},
		{Key: "x", Holder: "A", At: at(lease), Until: at(lease)},
		{Key: "x", Holder: "A", At: at(lease), Until: at(0)},
	} {
		if _, err := s.ClaimDedupKey(ctx, bad); err == nil {
			t.Errorf("ClaimDedupKey(%+v) succeeded, want refusal", bad)
		}
	}
	if err := s.CompleteDedupKey(ctx, "x", at(lease), at(0)); err == nil {
		t.Error("CompleteDedupKey lapsing before it is made succeeded, want refusal")
	}
	c.claim("x", "A", at(0), at(lease), true) // the refusals stored nothing
}

func testDedupPurge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c := claimer{t, s}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for i := range 5 {
		k := fmt.Sprint("claimed/", i)
		c.claim(k, "A", at(0), at(time.Duration(i+1)*time.Minute), true)
		k = fmt.Sprint("completed/", i)
		c.complete(k, at(0), at(time.Duration(i+1)*time.Minute))
	}
	purge := func(before time.Time, want int64) {
		t.Helper()
		n, err := s.PurgeDedupKeys(ctx, before)
		if err != nil || n != want {
			t.Fatalf("PurgeDedupKeys(+%s) = %d, %v; want %d", before.Sub(t0), n, err, want)
		}
	}
	purge(at(0), 0)
	purge(at(2*time.Minute), 4) // lapsed at 1 and 2 minutes, of both kinds
	purge(at(2*time.Minute), 0)
	c.claim("completed/2", "B", at(2*time.Minute), at(10*time.Minute), false) // not lapsed: kept
	purge(at(time.Hour), 6)
	c.claim("completed/0", "B", at(time.Hour), at(2*time.Hour), true)
}

// raceClaims has each of holders claim each of keys at once, at the given
// time, and checks that exactly one claim of each key won. stores are
// used in turn, so claims of one key go through every handle given.
func raceClaims(t *testing.T, stores []store.Store, keys []string, holders int, at, until time.Time) {
	t.Helper()
	wins := make([]atomic.Int32, len(keys))
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(keys)*holders)
	for h := range holders {
		s := stores[h%len(stores)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i, k := range keys {
				ok, err := s.ClaimDedupKey(t.Context(), store.DedupClaim{Key: k, Holder: fmt.Sprint("node-", h),
					At: at, Until: until})
				if err != nil {
					errs <- err
					return
				}
				if ok {
					wins[i].Add(1)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, k := range keys {
		if n := wins[i].Load(); n != 1 {
			t.Errorf("key %s: %d claims won, want exactly 1", k, n)
		}
	}
}

func testDedupConcurrentClaims(t *testing.T, s store.Store) {
	var keys []string
	for i := range 25 {
		keys = append(keys, fmt.Sprint("fares/race-", i))
	}
	raceClaims(t, []store.Store{s}, keys, 8, t0, t0.Add(time.Minute))
	// Every claim lapsed: racing to take them over, one wins again.
	raceClaims(t, []store.Store{s}, keys, 8, t0.Add(time.Minute), t0.Add(2*time.Minute))
}

// RunShared runs the cases that need two handles on one database, as two
// hub nodes have. open returns both, on a new, empty database, closed when
// t ends.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Run("ConcurrentClaims", func(t *testing.T) {
		a, b := open(t)
		var keys []string
		for i := range 25 {
			keys = append(keys, fmt.Sprint("fares/node-race-", i))
		}
		raceClaims(t, []store.Store{a, b}, keys, 8, t0, t0.Add(time.Minute))
		raceClaims(t, []store.Store{a, b}, keys, 8, t0.Add(time.Minute), t0.Add(2*time.Minute))
		// Completed on one node, a duplicate on the other.
		if err := a.CompleteDedupKey(t.Context(), keys[0], t0.Add(time.Minute), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		claimer{t, b}.claim(keys[0], "node-b", t0.Add(30*time.Minute), t0.Add(31*time.Minute), false)
	})
	t.Run("DeadLetters", func(t *testing.T) {
		a, b := open(t)
		// Both nodes store the same letter at once: one row, one ID.
		const n = 8
		ids := make([]int64, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			s := []store.Store{a, b}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := s.PutDeadLetter(t.Context(), letter("fares", "shared", 1))
				ids[i] = id
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("racing puts of one letter returned IDs %v, want one ID", ids)
			}
		}
		if err := b.MarkDeadLetterReplayed(t.Context(), ids[0], t0); err != nil {
			t.Fatal(err)
		}
		all, err := a.ListDeadLetters(t.Context(), store.DeadLetterPage{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Replays != 1 || all[0].MessageUUID != "shared" {
			t.Fatalf("letters seen by the other node: %+v", all)
		}
	})
}
