//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/logtest"
)

// This file runs the real citycard binary as a separate process, for the
// tests that need to kill it.

// buildCitycard compiles the command into a temporary directory.
func buildCitycard(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH, so the citycard binary cannot be built: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "citycard")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(gobin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// childEnv is the test's environment without any CITYCARD_ setting, plus
// extra, so that the caller's shell cannot change what a test runs against.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CITYCARD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// server is a running `citycard serve`.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stderr *logtest.Buffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done is closed
}

var listeningLine = regexp.MustCompile(`listening on (http://\S+) `)

// startServer starts `citycard serve` on a free loopback port, with extra
// arguments, and waits until it answers /healthz.
func startServer(t *testing.T, bin, dsn, adminToken string, extra ...string) *server {
	t.Helper()
	s, err := tryStartServer(t, bin, dsn, adminToken, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// errExitedEarly is tryStartServer's error for a serve that exited before it
// listened: for a test that expects a hub may refuse to start.
var errExitedEarly = errors.New("citycard serve exited before listening")

// tryStartServer is startServer that returns, rather than fails t, when the
// process exits before it listens (an error wrapping errExitedEarly, with
// its output).
func tryStartServer(t *testing.T, bin, dsn, adminToken string, extra ...string) (*server, error) {
	t.Helper()
	s := &server{t: t, stderr: &logtest.Buffer{}, done: make(chan struct{})}
	stdout := &logtest.Buffer{}
	s.cmd = exec.Command(bin, append([]string{"serve", "--db", dsn, "--listen", "127.0.0.1:0"}, extra...)...)
	s.cmd.Env = childEnv("CITYCARD_ADMIN_TOKEN=" + adminToken)
	s.cmd.Stdout = stdout
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start citycard serve: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("citycard serve (pid %d) stderr, last 4 KiB:\n%s", s.cmd.Process.Pid, tail(s.stderr.String(), 4096))
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for s.url == "" {
		if m := listeningLine.FindStringSubmatch(stdout.String()); m != nil {
			s.url = m[1]
			break
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%w: %v\nstdout: %s\nstderr: %s", errExitedEarly, s.err, stdout, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("citycard serve printed no listening line within 60s\nstdout: %s\nstderr: %s", stdout, s.stderr)
		}
	}
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/healthz did not answer 200 within 60s: %v", s.url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the server and waits for it to exit, returning
// Wait's result.
func (s *server) stop(sig os.Signal) error {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-s.done:
		return s.err
	case <-time.After(60 * time.Second):
		s.t.Fatalf("citycard serve did not exit within 60s of %v", sig)
		return nil
	}
}

// runCitycard runs a citycard command to completion and returns its
// combined output and exit code.
func runCitycard(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("citycard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), 0
}

// client calls the hub's API as one operator.
type client struct {
	url, token string
	http       *http.Client
	mu         sync.Mutex
	keys       int
}

func newClient(url, token string) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &client{url: url, token: token, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do sends a request and decodes a JSON answer into out (when not nil).
// Writes carry a fresh Idempotency-Key. A transport error is returned as
// is; any answer, whatever its status, is not an error.
func (c *client) do(method, path string, body, out any) (int, error) {
	return c.doKey(method, path, "", body, out)
}

// doKey is do with the given Idempotency-Key ("" makes a fresh one).
func (c *client) doKey(method, path, key string, body, out any) (int, error) {
	var rd io.Reader
	var buf []byte
	if body != nil {
		var err error
		if buf, err = json.Marshal(body); err != nil {
			return 0, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		if key == "" {
			c.mu.Lock()
			c.keys++
			key = fmt.Sprintf("test-%d-%d", time.Now().UnixNano(), c.keys)
			c.mu.Unlock()
		}
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s answer %q: %w", method, path, data, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, &httpStatusError{status: resp.StatusCode, body: string(data)}
	}
	return resp.StatusCode, nil
}

// must sends a request that has to succeed with status want.
func (c *client) must(t *testing.T, method, path string, want int, body, out any) {
	t.Helper()
	got, err := c.do(method, path, body, out)
	if got != want {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, err)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// httpStatusError is an answer that was not a success.
type httpStatusError struct {
	status int
	body   string
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
