//go:build linux

package wiring_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// listedPlugin is the payer plugin as GET /v1/plugins shows it.
func listedPlugin(t *testing.T, h *pluginHub) map[string]any {
	t.Helper()
	list := h.c.must("GET", "/v1/plugins", nil, 200)
	ps := list["plugins"].([]any)
	if len(ps) != 1 {
		t.Fatalf("plugins: %v", ps)
	}
	return ps[0].(map[string]any)
}

// TestLivenessListingNeverShowsDeadPID kills the payer plugin with SIGKILL
// while charges stream through it, waits for the kernel itself to report
// the process dead (a pidfd of the test's own), and reads GET /v1/plugins
// at once: the killed PID must not be listed as running. Then the plugin is
// listed running again under a new PID, with the signal as its last error,
// and the charges go through.
func TestLivenessListingNeverShowsDeadPID(t *testing.T) {
	h := startPluginHub(t, storetest.OpenSQLite(t))

	var ok, retryable, n atomic.Int64
	var mu sync.Mutex
	var unknown []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("live-%d-%d", w, i)
				status, m := h.send("payer.charge.v1", key, map[string]any{"key": key, "card": h.card, "amount": 1})
				n.Add(1)
				switch {
				case status == 200:
					ok.Add(1)
				case status == 503 || status == 504:
					retryable.Add(1)
				default:
					mu.Lock()
					unknown = append(unknown, fmt.Sprintf("%s: %d %v", key, status, m))
					mu.Unlock()
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitUntil(t, "charges to go through", func() bool { return ok.Load() > 20 })

	before := listedPlugin(t, h)
	pid := int(before["pid"].(float64))
	if before["state"] != "running" || pid == 0 {
		t.Fatalf("before the kill: %v", before)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (needs Linux 5.3)", err)
	}
	defer unix.Close(fd)

	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		k, err := unix.Poll(fds, 20_000)
		if err != nil && errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k != 1 {
			t.Fatalf("the killed plugin never exited: %v", err)
		}
		break
	}
	osSaw := time.Since(killed)
	after := listedPlugin(t, h)
	t.Logf("the kernel reported pid %d dead %v after the kill; listed then as %v (pid %v)",
		pid, osSaw, after["state"], after["pid"])
	if after["state"] == "running" {
		t.Errorf("listed as running once the kernel reported its process dead: %v", after)
	}
	if p, _ := after["pid"].(float64); int(p) == pid {
		t.Errorf("the dead PID %d is still listed: %v", pid, after)
	}

	waitUntil(t, "the plugin to be listed running again", func() bool {
		p := listedPlugin(t, h)
		newPID, _ := p["pid"].(float64)
		return p["state"] == "running" && newPID != 0 && int(newPID) != pid
	})
	p := listedPlugin(t, h)
	if p["restarts"].(float64) < 1 || !strings.Contains(fmt.Sprint(p["last_error"]), "signal: killed") {
		t.Errorf("after the restart: %v, want a restart and the signal as last_error", p)
	}
	matches(t, "api-plugins", map[string]any{"plugins": []any{p}})
	okBefore := ok.Load()
	waitUntil(t, "charges to go through the restarted plugin", func() bool { return ok.Load() > okBefore+20 })

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d charges: %d approved, %d answered retryable", n.Load(), ok.Load(), retryable.Load())
	if len(unknown) > 0 {
		t.Errorf("answers that are neither done nor retryable: %v", unknown)
	}
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
