//go:build linux

package pluginhost

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/citycard/citycard/sdk"
)

// exitBound bounds how soon the host sees a plugin's process exit. The
// requirement is 500 ms; with -race on two cores shared with four busy
// processes we measured up to 350 ms, too close to assert, so the test
// asserts 2 s and logs the figure (idle: under 15 ms).
const exitBound = 2 * time.Second

// openPidfd holds pid so the test learns of its exit from the kernel
// itself, independently of the host.
func openPidfd(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (needs Linux 5.3)", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// awaitExit blocks until the kernel reports the process behind fd dead.
func awaitExit(t *testing.T, fd int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err == nil && n == 1 {
			return
		}
		if err != nil && err != unix.EINTR {
			t.Fatalf("poll pidfd: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed process never exited")
		}
	}
}

// TestLivenessKillUnderLoad kills the plugin with SIGKILL while several
// callers keep it busy, three times over. Health pings are at the
// production interval, so only watching the process can find the exit in
// time. Each time: the moment the kernel says the process is dead, the
// status no longer lists it as running; the host sees the exit within
// exitBound (measured to the supervisor's record of the crash); and it
// restarts the plugin, which serves again.
func TestLivenessKillUnderLoad(t *testing.T) {
	var crashMu sync.Mutex
	var crashedAt []time.Time
	h := newTestHost(t, Options{
		HealthInterval: 5 * time.Second,
		OnCrash: func(string, []sdk.Message) {
			crashMu.Lock()
			crashedAt = append(crashedAt, time.Now())
			crashMu.Unlock()
		},
	})
	ctx := context.Background()
	if err := h.Start(ctx, echoSpec(`{"greeting":"hi"}`)); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	var bad []error
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := h.Handle(cctx, "echo", say("load", i%3))
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case retryable(err):
					failed++
				default:
					bad = append(bad, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(2 * time.Millisecond) // as a caller's retry would
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	okCount := func() int { mu.Lock(); defer mu.Unlock(); return ok }

	var worst time.Duration
	for round := 1; round <= 3; round++ {
		before := okCount()
		waitFor(t, "calls to succeed", func() bool { return okCount() > before+50 })
		st := status(t, h.Host, "echo")
		if st.State != StateRunning || st.PID == 0 {
			t.Fatalf("round %d: status before the kill = %+v", round, st)
		}
		fd := openPidfd(t, st.PID)

		killed := time.Now()
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		awaitExit(t, fd)
		osSaw := time.Since(killed)
		// The kernel has seen it die: no listing may call it running now.
		after := status(t, h.Host, "echo")
		if after.State == StateRunning || after.PID == st.PID {
			t.Errorf("round %d: %v after the kernel reported pid %d dead, status = %+v",
				round, osSaw, st.PID, after)
		}

		// The supervisor logs the crash as soon as it has marked it, before
		// reaping the process and calling OnCrash.
		waitFor(t, "the crash to be logged", func() bool {
			return len(h.logs.records("echo", "plugin crashed; restarting")) == round
		})
		rec := h.logs.records("echo", "plugin crashed; restarting")[round-1]
		at, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		seen := at.Sub(killed)
		worst = max(worst, seen)
		waitFor(t, "OnCrash", func() bool { crashMu.Lock(); defer crashMu.Unlock(); return len(crashedAt) == round })
		crashMu.Lock()
		onCrash := crashedAt[round-1].Sub(killed)
		crashMu.Unlock()
		// How it ended may be learnt only once reaped (LastError, below).
		if r, _ := rec["reason"].(string); !strings.HasPrefix(r, "process exited") {
			t.Errorf("round %d: logged reason %v", round, rec["reason"])
		}
		t.Logf("round %d: after the kill, the kernel saw the exit at %v, the supervisor at %v, OnCrash ran at %v",
			round, osSaw, seen, onCrash)

		waitFor(t, "the restart", func() bool {
			s := status(t, h.Host, "echo")
			return s.State == StateRunning && s.Restarts == round && s.PID != st.PID
		})
		if s := status(t, h.Host, "echo"); !strings.Contains(s.LastError, "signal: killed") {
			t.Errorf("round %d: LastError = %q, want the signal that ended it", round, s.LastError)
		}
	}
	before := okCount()
	waitFor(t, "calls to succeed after the last restart", func() bool { return okCount() > before+50 })

	mu.Lock()
	t.Logf("calls: %d ok, %d retryable failures; worst detection %v", ok, failed, worst)
	if len(bad) > 0 {
		t.Errorf("%d calls failed with non-retryable errors, first: %v", len(bad), bad[0])
	}
	mu.Unlock()
	if worst > exitBound {
		t.Errorf("the host took %v to see a plugin exit, want at most %v", worst, exitBound)
	}
}
