//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/faulttest"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// The fault suite (issue 11): the real citycard binary under a stream of
// payments and balance reads, with faults injected at moments a seed
// chooses; after the faults, the client history must be linearizable
// against card balances, every approval must be in the ledger once, every
// card must hold its top-up less its approved payments, and `citycard
// ledger verify` must pass. docs/reliability.md lists the faults.

const faultToken = "fault-suite-admin-token-0123456789"

// injection is one fault: inject starts it and returns what ends it.
type injection struct {
	name   string
	inject func(h *faultHub, r *rand.Rand) (heal func() error, err error)
	hold   [2]time.Duration // how long the fault lasts, drawn from [lo, hi]
}

// faultHub is the hub process of a fault run, restarted on the same port
// and store when a fault kills it.
type faultHub struct {
	t      *testing.T
	bin    string // the citycard binary, or a wrapper that limits it
	dsn    string
	listen string
	// checkpoints is the hub's own checkpoint log, for serve and verify:
	// a PostgreSQL store's default is shared by every hub run here.
	checkpoints string
	mu          sync.Mutex
	srv         *server
}

func newFaultHub(t *testing.T, bin, dsn string) *faultHub {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return &faultHub{t: t, bin: bin, dsn: dsn, listen: "127.0.0.1:" + strconv.Itoa(port),
		checkpoints: filepath.Join(t.TempDir(), "checkpoints")}
}

func (h *faultHub) url() string { return "http://" + h.listen }

func (h *faultHub) start() {
	h.startWith(h.bin)
}

func (h *faultHub) startWith(bin string) {
	srv := startServer(h.t, bin, h.dsn, faultToken, "--listen", h.listen, "--checkpoints", h.checkpoints)
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
}

func (h *faultHub) stop(sig syscall.Signal) error {
	h.mu.Lock()
	srv := h.srv
	h.mu.Unlock()
	return srv.stop(sig)
}

// faultScale is the share of the short run done under the race detector,
// where the binary runs several times slower.
func faultScale(n int) int {
	if raceEnabled {
		return max(1, n/5)
	}
	return n
}

// runFaults runs one fault scenario: a hub on dsn (started by the caller's
// h), load, n faults drawn from injections (or a soak's worth), then the
// checks. It returns the figures.
func runFaults(t *testing.T, h *faultHub, injections []injection, n int) faulttest.Figures {
	t.Helper()
	seed := faulttest.Seed(t)
	r := faulttest.Rand(seed)
	soak := faulttest.Soak(t)
	start := time.Now()
	h.start()
	c := faulttest.NewClient(h.url(), faultToken)
	hist := faulttest.NewHistory()
	ctx := t.Context()
	cards, err := faulttest.Setup(ctx, c, hist, 32, 400000)
	if err != nil {
		t.Fatal(err)
	}
	clients := 8
	if raceEnabled {
		clients = 4
	}
	load := &faulttest.Load{Client: c, Cards: cards, Clients: clients, Seed: seed, History: hist}
	load.Start(ctx)
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()

	var fig faulttest.Figures
	byName := map[string]int{}
	refused := map[string]int64{} // tries answered retryable or not at all, by fault
	var recovery time.Duration
	for i := 0; ; i++ {
		if soak > 0 {
			if time.Since(start) > soak {
				break
			}
		} else if i >= n {
			break
		}
		time.Sleep(faulttest.Between(r, 150*time.Millisecond, 600*time.Millisecond))
		f := injections[r.IntN(len(injections))]
		before := load.Unanswered.Load()
		heal, err := f.inject(h, r)
		if err != nil {
			t.Fatalf("fault %d (%s): %v", i, f.name, err)
		}
		time.Sleep(faulttest.Between(r, f.hold[0], f.hold[1]))
		if err := heal(); err != nil {
			t.Fatalf("fault %d (%s): heal: %v", i, f.name, err)
		}
		fig.Faults++
		byName[f.name]++
		took, err := load.WaitServing(ctx, cards[0].Number, 60*time.Second)
		if err != nil {
			t.Fatalf("fault %d (%s): the hub does not serve again once the fault ended: %v", i, f.name, err)
		}
		recovery = max(recovery, took)
		refused[f.name] += load.Unanswered.Load() - before
	}
	load.Stop()
	stopped = true
	fig.Retries, fig.Unanswered = load.Retries.Load(), load.Unanswered.Load()
	for _, e := range load.Errors {
		t.Errorf("a payment got an answer that is neither approved, declined nor retryable: %s", e)
	}

	faulttest.CheckLinearizable(t, hist, 60*time.Second)
	faulttest.CheckEnd(t, c, hist, &fig)
	if err := h.stop(syscall.SIGTERM); err != nil {
		t.Errorf("citycard serve after SIGTERM: %v, want exit status 0", err)
	}
	if out, code := runCitycard(t, h.bin, "ledger", "verify", "--db", h.dsn, "--checkpoints", h.checkpoints); code != 0 {
		t.Errorf("citycard ledger verify after the faults: exit %d\n%s", code, tail(out, 4096))
	}
	fig.Duration = time.Since(start)
	t.Logf("faults by kind: %v; tries without an outcome during them: %v; slowest recovery %v", byName, refused, recovery.Round(time.Millisecond))
	t.Logf("figures: %v", fig)
	return fig
}

// postgresBase is CITYCARD_TEST_POSTGRES, or skips t.
func postgresBase(t *testing.T) string {
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skip(storetest.PostgresEnv + " is not set: skipping the PostgreSQL faults; set it to a PostgreSQL URL to run them")
	}
	return base
}

// TestFaultPostgresProxy puts a TCP fault proxy between the hub and
// PostgreSQL and, at moments the seed picks, cuts every connection,
// refuses new ones for a while, slows traffic down, or resets a
// connection as it sends COMMIT (before it reaches the server, or just
// after, when the hub cannot know whether its batch committed).
func TestFaultPostgresProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	base := postgresBase(t)
	db := faulttest.NewDatabase(t, base)
	proxy, err := faulttest.NewProxy(db.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	healProxy := func() error { proxy.Heal(); return nil }
	injections := []injection{
		{"proxy cut", func(*faultHub, *rand.Rand) (func() error, error) {
			proxy.Cut()
			return healProxy, nil
		}, [2]time.Duration{0, 0}},
		{"proxy refuse", func(_ *faultHub, r *rand.Rand) (func() error, error) {
			d := faulttest.Between(r, 300*time.Millisecond, 3*time.Second)
			proxy.Refuse(d)
			return healProxy, nil
		}, [2]time.Duration{300 * time.Millisecond, 3 * time.Second}},
		{"proxy delay", func(_ *faultHub, r *rand.Rand) (func() error, error) {
			proxy.Delay(faulttest.Between(r, 20*time.Millisecond, 400*time.Millisecond), time.Minute)
			return healProxy, nil
		}, [2]time.Duration{500 * time.Millisecond, 2 * time.Second}},
		{"proxy reset before commit", func(_ *faultHub, r *rand.Rand) (func() error, error) {
			proxy.ResetCommits(1+r.IntN(3), false)
			return healProxy, nil
		}, [2]time.Duration{200 * time.Millisecond, time.Second}},
		{"proxy reset after commit", func(_ *faultHub, r *rand.Rand) (func() error, error) {
			proxy.ResetCommits(1+r.IntN(3), true)
			return healProxy, nil
		}, [2]time.Duration{200 * time.Millisecond, time.Second}},
	}
	bin := buildCitycard(t)
	h := newFaultHub(t, bin, db.URL(proxy.Addr()))
	runFaults(t, h, injections, faultScale(25))
	t.Logf("the proxy reset %d connections mid-commit", proxy.Resets.Load())
}

// TestFaultPostgresServer ends the hub's sessions from the server side
// (pg_terminate_backend), and takes its database away for a while
// (ALTER DATABASE … ALLOW_CONNECTIONS false, its sessions terminated,
// then true): the outage of issue 11.
func TestFaultPostgresServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	base := postgresBase(t)
	db := faulttest.NewDatabase(t, base)
	injections := []injection{
		{"pg_terminate_backend", func(h *faultHub, _ *rand.Rand) (func() error, error) {
			_, err := db.Terminate(t.Context())
			return func() error { return nil }, err
		}, [2]time.Duration{0, 0}},
		{"ALLOW_CONNECTIONS false", func(h *faultHub, _ *rand.Rand) (func() error, error) {
			err := db.AllowConnections(t.Context(), false)
			return func() error { return db.AllowConnections(context.Background(), true) }, err
		}, [2]time.Duration{500 * time.Millisecond, 3 * time.Second}},
	}
	bin := buildCitycard(t)
	h := newFaultHub(t, bin, db.URL(""))
	runFaults(t, h, injections, faultScale(12))
}

// TestFaultPostgresRestart restarts a private PostgreSQL instance (fast
// and immediate shutdowns, the latter a crash of the server) under load.
func TestFaultPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	postgresBase(t) // the PostgreSQL faults run with the PostgreSQL tests
	pg := faulttest.NewServer(t)
	db := faulttest.NewDatabase(t, pg.URL())
	injections := []injection{
		{"server restart (fast)", func(*faultHub, *rand.Rand) (func() error, error) {
			return func() error { return nil }, pg.Restart("fast")
		}, [2]time.Duration{0, 0}},
		{"server restart (immediate)", func(*faultHub, *rand.Rand) (func() error, error) {
			return func() error { return nil }, pg.Restart("immediate")
		}, [2]time.Duration{0, 0}},
	}
	bin := buildCitycard(t)
	h := newFaultHub(t, bin, db.URL(""))
	runFaults(t, h, injections, faultScale(4))
}

// killHub is the kill -9 fault: SIGKILL the hub under load, then start it
// again on the same store and port; the clients re-send what got no answer.
var killHub = injection{"hub kill -9", func(h *faultHub, _ *rand.Rand) (func() error, error) {
	h.stop(syscall.SIGKILL)
	return func() error { h.start(); return nil }, nil
}, [2]time.Duration{0, 200 * time.Millisecond}}

// TestFaultHubKill SIGKILLs the hub under load, over and over, on both
// stores; with the writer committing batch after batch, most kills land
// during a commit.
func TestFaultHubKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	bin := buildCitycard(t)
	t.Run("sqlite", func(t *testing.T) {
		h := newFaultHub(t, bin, "sqlite://"+filepath.Join(t.TempDir(), "citycard.db"))
		runFaults(t, h, []injection{killHub}, faultScale(40))
	})
	t.Run("postgres", func(t *testing.T) {
		db := faulttest.NewDatabase(t, postgresBase(t))
		h := newFaultHub(t, bin, db.URL(""))
		runFaults(t, h, []injection{killHub}, faultScale(10))
	})
}

// TestFaultSQLiteFullDisk restarts the hub with a file-size limit
// (RLIMIT_FSIZE through prlimit) just above what its store holds, so that
// under load its writes fail with EFBIG as on a full disk: the hub must
// answer them with a retryable 503, never approve one, and leave a store
// that verifies. Then it is restarted without the limit and carries on.
func TestFaultSQLiteFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the citycard binary; skipped with -short")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("no prlimit on PATH: cannot start the hub with a file-size limit to simulate a full disk")
	}
	bin := buildCitycard(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "citycard.db")
	h := newFaultHub(t, bin, "sqlite://"+path)
	bitten := 0 // faults during which the hub logged a refused write
	full := injection{"sqlite full disk", func(h *faultHub, r *rand.Rand) (func() error, error) {
		// A kill, not a stop: SIGTERM under this load is TestStopUnderLoad's.
		h.stop(syscall.SIGKILL)
		// A little room above the database file: the WAL (often larger
		// already) cannot take another frame, nor can a checkpoint grow
		// the database much, so writes fail with EFBIG, as on a full disk.
		var size int64
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		limit := size + 16<<10 + r.Int64N(48<<10)
		wrapper := bin + ".limited"
		script := fmt.Sprintf("#!/bin/sh\nexec %s --fsize=%d -- %s \"$@\"\n", prlimit, limit, bin)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			return nil, err
		}
		diskFull := func(log string) bool {
			return strings.Contains(log, "disk is full") || strings.Contains(log, "too large") || strings.Contains(log, "disk I/O error")
		}
		srv, err := tryStartServer(t, wrapper, h.dsn, faultToken, "--listen", h.listen, "--checkpoints", h.checkpoints)
		if err != nil {
			// Recovering a large WAL at open can need more room than the
			// limit leaves: the hub then refuses to start, which is a
			// clean refusal too, as long as the store verifies after.
			if !errors.Is(err, errExitedEarly) || !diskFull(err.Error()) {
				return nil, err
			}
			bitten++
			return func() error {
				if out, code := runCitycard(t, bin, "ledger", "verify", "--db", h.dsn, "--checkpoints", h.checkpoints); code != 0 {
					return fmt.Errorf("ledger verify after a hub refused to start on a full disk: exit %d\n%s", code, tail(out, 2048))
				}
				h.start()
				return nil
			}, nil
		}
		h.mu.Lock()
		h.srv = srv
		h.mu.Unlock()
		return func() error {
			// The hub may not stop cleanly on a full disk; kill it then.
			srv.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-srv.done:
			case <-time.After(5 * time.Second):
				srv.cmd.Process.Kill()
				<-srv.done
			}
			if log := srv.stderr.String(); diskFull(log) {
				bitten++
			} else if i := strings.Index(log, `"level":"ERROR"`); i >= 0 {
				t.Logf("first error the limited hub logged: %s", tail(log[i:min(len(log), i+400)], 400))
			}
			if out, code := runCitycard(t, bin, "ledger", "verify", "--db", h.dsn, "--checkpoints", h.checkpoints); code != 0 {
				return fmt.Errorf("ledger verify after a full disk: exit %d\n%s", code, tail(out, 2048))
			}
			h.start()
			return nil
		}, nil
	}, [2]time.Duration{time.Second, 3 * time.Second}}
	fig := runFaults(t, h, []injection{full}, faultScale(10))
	t.Logf("the hub logged a full disk (SQLITE_FULL or EFBIG) during %d of %d faults", bitten, fig.Faults)
	if bitten == 0 {
		t.Errorf("no fault filled the disk: the file-size limit never bit")
	}
}
