package bus

import (
	"context"
	"errors"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/postgres"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// The store-backed stores run against the real drivers: SQLite always,
// PostgreSQL when $CITYCARD_TEST_POSTGRES is set (storetest.ForEachDriver
// skips it with the reason otherwise).

// testDeadLetterStore checks the DeadLetterStore contract, whatever the
// implementation; s must be empty.
func testDeadLetterStore(t *testing.T, s DeadLetterStore) {
	ctx := t.Context()
	at := time.Date(2026, 1, 1, 0, 0, 0, 123000, time.UTC)
	for i, uuid := range []string{"u1", "u2", "u3"} {
		err := s.Put(ctx, DeadLetter{ID: 99, Topic: "plugin.p.t", Handler: "h", Reason: "r " + uuid, MessageUUID: uuid,
			Payload: []byte{byte(i), 0}, Metadata: map[string]string{"k": uuid}, At: at.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Delivered twice: stored once.
	if err := s.Put(ctx, DeadLetter{Handler: "h", MessageUUID: "u2", Reason: "again", At: at}); err != nil {
		t.Fatal(err)
	}
	// The same message failed by another handler is a letter of its own.
	if err := s.Put(ctx, DeadLetter{Handler: "other", MessageUUID: "u2", At: at}); err != nil {
		t.Fatal(err)
	}

	all, err := s.List(ctx, 0, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("List = %d letters, %v; want 4", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("List not in ID order: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	if all[3].Handler != "other" {
		t.Fatalf("last letter is %s's, want other's", all[3].Handler)
	}
	page, err := s.List(ctx, all[0].ID, 2)
	if err != nil || len(page) != 2 || page[0].ID != all[1].ID || page[1].ID != all[2].ID {
		t.Fatalf("List(after %d, limit 2) = %+v, %v", all[0].ID, page, err)
	}
	if none, err := s.List(ctx, all[3].ID, 10); err != nil || len(none) != 0 {
		t.Fatalf("List past the end = %+v, %v", none, err)
	}
	if none, err := s.List(ctx, 0, 0); err != nil || len(none) != 0 {
		t.Fatalf("List with limit 0 = %+v, %v", none, err)
	}
	if from, err := s.List(ctx, -5, 10); err != nil || len(from) != 4 {
		t.Fatalf("List after -5 = %d letters, %v; want 4", len(from), err)
	}

	id := all[1].ID
	l, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := DeadLetter{ID: id, Topic: "plugin.p.t", Handler: "h", Reason: "r u2", MessageUUID: "u2",
		Payload: []byte{1, 0}, Metadata: map[string]string{"k": "u2"}, At: at.Add(time.Second)}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("Get(%d):\n got  %+v\n want %+v", id, l, want)
	}
	// Callers get copies.
	l.Payload[0], l.Metadata["k"] = 42, "changed"
	if again, _ := s.Get(ctx, id); again.Payload[0] != 1 || again.Metadata["k"] != "u2" {
		t.Fatalf("store changed through a returned letter: %+v", again)
	}

	replayed := at.Add(time.Hour)
	if err := s.MarkReplayed(ctx, id, replayed); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Get(ctx, id); l.ReplayedAt == nil || !l.ReplayedAt.Equal(replayed) {
		t.Fatalf("ReplayedAt = %v, want %s", l.ReplayedAt, replayed)
	}
	if l, _ := s.Get(ctx, all[0].ID); l.ReplayedAt != nil {
		t.Fatalf("letter %d marked replayed too", all[0].ID)
	}
	for _, id := range []int64{0, -1, all[3].ID + 100} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrDeadLetterNotFound) {
			t.Errorf("Get(%d) = %v, want ErrDeadLetterNotFound", id, err)
		}
		if err := s.MarkReplayed(ctx, id, at); !errors.Is(err, ErrDeadLetterNotFound) {
			t.Errorf("MarkReplayed(%d) = %v, want ErrDeadLetterNotFound", id, err)
		}
	}
}

func TestDeadLetterStores(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) { testDeadLetterStore(t, NewMemoryDeadLetters()) })
	storetest.ForEachDriver(t, func(t *testing.T, s store.Store) {
		testDeadLetterStore(t, NewStoreDeadLetters(s))
	})
}

// TestStoreDeadLettersTakeNUL checks that a letter whose error holds a NUL
// byte is stored rather than refused: refused, it would be redelivered for
// ever.
func TestStoreDeadLettersTakeNUL(t *testing.T) {
	t.Parallel()
	storetest.ForEachDriver(t, func(t *testing.T, s store.Store) {
		d := NewStoreDeadLetters(s)
		err := d.Put(t.Context(), DeadLetter{Topic: "plugin.p.t", Handler: "h", MessageUUID: "u1",
			Reason: "bad frame \x00\x01", Metadata: map[string]string{"raw": "a\x00b"}, At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ls, err := d.List(t.Context(), 0, 10)
		if err != nil || len(ls) != 1 {
			t.Fatalf("List = %+v, %v", ls, err)
		}
		if ls[0].Reason != "bad frame \uFFFD\x01" || ls[0].Metadata["raw"] != "a\x00b" {
			t.Errorf("stored reason %q, metadata %q", ls[0].Reason, ls[0].Metadata)
		}
	})
}

// clock is a time the test moves, read by several stores at once.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

func TestStoreIdempotency(t *testing.T) {
	t.Parallel()
	storetest.ForEachDriver(t, func(t *testing.T, s store.Store) {
		ctx := t.Context()
		window, lease := time.Hour, time.Minute
		// a and b are two hub nodes on one database.
		a, b := NewStoreIdempotency(s, window, lease), NewStoreIdempotency(s, window, lease)
		clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		a.now, b.now = clk.now, clk.now
		claim := func(k *StoreIdempotency, key string, want bool) {
			t.Helper()
			got, err := k.Claim(ctx, key)
			if err != nil || got != want {
				t.Fatalf("Claim(%s) = %v, %v; want %v", key, got, err, want)
			}
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}

		claim(a, "fares/k1", true)
		claim(b, "fares/k1", false) // in flight on a
		claim(a, "fares/k1", false) // and for a itself
		must(b.Release(ctx, "fares/k1"))
		claim(b, "fares/k1", false) // b cannot release a's claim
		must(a.Release(ctx, "fares/k1"))
		claim(b, "fares/k1", true) // the failed attempt is forgotten
		must(b.Complete(ctx, "fares/k1"))
		claim(a, "fares/k1", false)
		clk.add(window - time.Microsecond)
		claim(a, "fares/k1", false) // within the window
		clk.add(time.Microsecond)
		claim(a, "fares/k1", true) // the window passed
		must(a.Complete(ctx, "fares/k1"))

		// a dies mid-handler: its claim lapses with the lease, and once b
		// holds the key, a's late release does not free it.
		claim(a, "fares/k2", true)
		clk.add(lease - time.Microsecond)
		claim(b, "fares/k2", false)
		clk.add(time.Microsecond)
		claim(b, "fares/k2", true)
		must(a.Release(ctx, "fares/k2"))
		claim(a, "fares/k2", false)

		// Keys of the past window are purged by a claim, at most once a
		// minute, and no key of the window is.
		clk.add(2 * window)
		claim(a, "fares/k3", true)
		if n, err := a.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("Purge after a claim = %d, %v; want 0 (the claim purged)", n, err)
		}
		must(a.Complete(ctx, "fares/k3"))
		claim(b, "fares/k3", false)
		clk.add(window)
		if n, err := b.Purge(ctx); err != nil || n != 1 {
			t.Fatalf("Purge after the window = %d, %v; want 1", n, err)
		}
	})
}

func TestStoreIdempotencyDefaults(t *testing.T) {
	t.Parallel()
	k := NewStoreIdempotency(storetest.OpenSQLite(t), 0, -1)
	if k.window != DefaultDedupWindow || k.lease != DefaultClaimLease {
		t.Fatalf("defaults: window %s, lease %s", k.window, k.lease)
	}
	if other := NewStoreIdempotency(nil, 0, 0); other.holder == k.holder {
		t.Fatalf("two instances share holder %q", k.holder)
	}
}

// otherHandle opens another store on s's database, as a second hub node or
// the same hub restarted would; it is closed when t ends.
func otherHandle(t *testing.T, s store.Store) store.Store {
	t.Helper()
	var (
		o   store.Store
		err error
	)
	switch s := s.(type) {
	case *sqlite.Store:
		o, err = sqlite.Open(t.Context(), s.Path())
	case *postgres.Store:
		cfg, perr := pgxpool.ParseConfig(os.Getenv(storetest.PostgresEnv))
		if perr != nil {
			t.Fatal(perr)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = s.Schema()
		cfg.MaxConns = 4
		o, err = postgres.OpenConfig(t.Context(), cfg)
	default:
		t.Fatalf("no second handle for a %s store", s.Driver())
	}
	if err != nil {
		t.Fatalf("open a second %s store: %v", s.Driver(), err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// node is one hub's router on a store, with one handler, "ledger", that
// fails non-retryably while broken is set.
type node struct {
	r      *Router
	runs   *counter
	broken *atomic.Bool
}

func startNode(t *testing.T, s store.Store, topic string, runs *counter, broken *atomic.Bool) *node {
	t.Helper()
	cfg := testConfig(t, BackendGoChannel)
	cfg.DeadLetters = NewStoreDeadLetters(s)
	cfg.Idempotency = NewStoreIdempotency(s, 0, 0)
	r, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustHandle(t, r, "ledger", topic, func(ctx context.Context, m *message.Message) error {
		if broken.Load() {
			return errors.New("account frozen")
		}
		runs.inc(string(m.Payload))
		return nil
	})
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &node{r: r, runs: runs, broken: broken}
}

// sync publishes a message without a key and waits for the handler to
// run it: messages of a topic run in order, so every one before it is done.
func (n *node) sync(t *testing.T, topic, payload string) {
	t.Helper()
	publish(t, t.Context(), n.r, topic, msg(payload, ""))
	waitCount(t, n.runs, payload, 1)
}

// waitLetters waits until d holds n dead letters and returns them.
func waitLetters(t *testing.T, d DeadLetterStore, n int) []DeadLetter {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ls, err := d.List(t.Context(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters after %s, want %d", len(ls), waitFor, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStoreBackedSurviveRestart runs a hub, stops it and its database
// handle, and starts it again: a key handled before is still a duplicate,
// and the dead letter is still there to replay.
func TestStoreBackedSurviveRestart(t *testing.T) {
	t.Parallel()
	storetest.ForEachDriver(t, func(t *testing.T, first store.Store) {
		topic := Topic(uniq("p"), "pay")
		var runs counter
		var broken atomic.Bool
		later := otherHandle(t, first) // opened now, used after the restart

		n1 := startNode(t, first, topic, &runs, &broken)
		publish(t, t.Context(), n1.r, topic, msg("good", "k-good"))
		n1.sync(t, topic, "sync-1")
		broken.Store(true)
		publish(t, t.Context(), n1.r, topic, msg("bad", "k-bad"))
		waitLetters(t, NewStoreDeadLetters(first), 1)
		broken.Store(false)
		if err := n1.r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}

		n2 := startNode(t, later, topic, &runs, &broken)
		t.Cleanup(func() { n2.r.Close() })
		publish(t, t.Context(), n2.r, topic, msg("good", "k-good"))
		n2.sync(t, topic, "sync-2")
		if got := runs.get("good"); got != 1 {
			t.Errorf("k-good ran %d times across the restart, want 1", got)
		}
		ls := waitLetters(t, n2.r.DeadLetters(), 1)
		l := ls[0]
		if len(ls) != 1 || l.Handler != "ledger" || l.Topic != topic || string(l.Payload) != "bad" ||
			l.Reason != "account frozen" || l.Metadata[MetaIdempotencyKey] != "k-bad" {
			t.Fatalf("dead letters after the restart: %+v", ls)
		}
		if err := n2.r.Replay(t.Context(), l.ID); err != nil {
			t.Fatalf("Replay after the restart: %v", err)
		}
		waitCount(t, &runs, "bad", 1)
		if got, err := n2.r.DeadLetters().Get(t.Context(), l.ID); err != nil || got.ReplayedAt == nil {
			t.Fatalf("after replay: %+v, %v", got, err)
		}
		if err := n2.r.Replay(t.Context(), l.ID); !errors.Is(err, ErrAlreadyReplayed) {
			t.Errorf("second Replay: %v, want ErrAlreadyReplayed", err)
		}
	})
}

// TestStoreBackedSharedByNodes runs two hub nodes on one database: a key
// handled by one is a duplicate on the other, and a letter dead on one is
// replayed from the other.
func TestStoreBackedSharedByNodes(t *testing.T) {
	t.Parallel()
	storetest.ForEachDriver(t, func(t *testing.T, s store.Store) {
		topic := Topic(uniq("p"), "pay")
		var runsA, runsB counter
		var brokenA, brokenB atomic.Bool
		a := startNode(t, s, topic, &runsA, &brokenA)
		t.Cleanup(func() { a.r.Close() })
		b := startNode(t, otherHandle(t, s), topic, &runsB, &brokenB)
		t.Cleanup(func() { b.r.Close() })

		publish(t, t.Context(), a.r, topic, msg("tap", "k1"))
		a.sync(t, topic, "sync-a")
		publish(t, t.Context(), b.r, topic, msg("tap", "k1"))
		b.sync(t, topic, "sync-b")
		if ra, rb := runsA.get("tap"), runsB.get("tap"); ra != 1 || rb != 0 {
			t.Errorf("k1 ran %d times on a and %d on b, want once on a", ra, rb)
		}

		brokenA.Store(true)
		publish(t, t.Context(), a.r, topic, msg("bill", "k2"))
		ls := waitLetters(t, b.r.DeadLetters(), 1)
		if err := b.r.Replay(t.Context(), ls[0].ID); err != nil {
			t.Fatalf("Replay on b of a's letter: %v", err)
		}
		waitCount(t, &runsB, "bill", 1)
		if got, err := a.r.DeadLetters().Get(t.Context(), ls[0].ID); err != nil || got.ReplayedAt == nil {
			t.Fatalf("a's view after b's replay: %+v, %v", got, err)
		}
		// The replay completed k2: a resend to a is now a duplicate.
		brokenA.Store(false)
		publish(t, t.Context(), a.r, topic, msg("bill", "k2"))
		a.sync(t, topic, "sync-a2")
		if got := runsA.get("bill"); got != 0 {
			t.Errorf("k2 ran on a after b completed it")
		}
	})
}
