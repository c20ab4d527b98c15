package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/sdk/transit/tap"
)

// fakeFront is a front end that answers per the protocol from a script: the
// status of every uploaded tap, and one deny list download.
type fakeFront struct {
	mu       sync.Mutex
	status   string // every uploaded tap's answer
	online   int    // HTTP status of online taps
	uploaded []tap.Tap
	deny     any
}

func (f *fakeFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/v1/taps":
		w.WriteHeader(f.online)
		_, _ = w.Write([]byte(`{"code":"unavailable","message":"hub down","decision":"offline"}`))
	case "/v1/uploads":
		var in struct{ Taps []tap.Tap }
		_ = json.NewDecoder(r.Body).Decode(&in)
		out := map[string]any{"gaps": []any{}, "denylist_version": 0}
		var res []map[string]any
		for _, t := range in.Taps {
			f.uploaded = append(f.uploaded, t)
			res = append(res, map[string]any{"device": t.Device, "seq": t.Seq, "status": f.status})
		}
		out["results"] = res
		_ = json.NewEncoder(w).Encode(out)
	case "/v1/denylist":
		_ = json.NewEncoder(w).Encode(f.deny)
	}
}

func TestValidatorKeepsEveryTap(t *testing.T) {
	front := &fakeFront{status: Retry, online: http.StatusServiceUnavailable,
		deny: map[string]any{"version": 3, "full": true, "cards": []string{"3100990000000039"}}}
	srv := httptest.NewServer(front)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	key := bytes.Repeat([]byte{1}, tap.KeySize)
	v, err := NewValidator(Config{Device: Device{ID: "BUS-1", Route: "1"}, Key: key, Client: NewClient(srv.URL, &http.Client{Transport: tr})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := v.PollDenylist(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if d := v.Tap(ctx, "3100990000000039"); d.Allowed || d.Seq != 0 {
		t.Errorf("a denied card: %+v", d)
	}
	// The hub is down: decided offline, kept, signed as offline.
	if d := v.Tap(ctx, "3100990000000013"); !d.Allowed || d.Online || d.Seq != 1 {
		t.Errorf("decision = %+v", d)
	}
	v.SetOffline(true)
	v.Tap(ctx, "3100990000000013")
	if v.Queued() != 2 || v.Check() == nil {
		t.Fatalf("queued %d", v.Queued())
	}
	// "retry" keeps the taps; a final answer removes them.
	if n, err := v.Upload(ctx); n != 0 || err != nil || v.Queued() != 2 {
		t.Errorf("retry: %d %v, %d queued", n, err, v.Queued())
	}
	front.mu.Lock()
	front.status = Charged
	front.mu.Unlock()
	if n, err := v.Upload(ctx); n != 2 || err != nil || v.Queued() != 0 {
		t.Errorf("charged: %d %v, %d queued", n, err, v.Queued())
	}
	if err := v.Check(); err != nil {
		t.Error(err)
	}
	for _, up := range front.uploaded {
		if !up.Offline || !tap.Verify(key, up) {
			t.Errorf("uploaded %+v: not signed as offline", up)
		}
	}
	// The deny list's change applies on top of the version held.
	front.mu.Lock()
	front.deny = map[string]any{"version": 4, "since": 3, "add": []string{"3100990000000047"}, "remove": []string{"3100990000000039"}}
	front.mu.Unlock()
	if err := v.PollDenylist(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if ver, n := v.DenylistVersion(); ver != 4 || n != 1 || !v.Denied("3100990000000047") {
		t.Errorf("deny list %d with %d cards", ver, n)
	}
	c := v.counters.Snapshot()
	if c.Taps != 2 || c.DeniedLocally != 1 || c.OfflineDecisions != 2 || c.Retries != 2 || c.Charged != 2 {
		t.Errorf("counts = %+v", c)
	}
}

func TestLinkDown(t *testing.T) {
	l := &link{next: http.DefaultTransport}
	l.down.Store(true)
	c := NewClient("http://127.0.0.1:1", &http.Client{Transport: l})
	if _, err := c.Health(context.Background()); err == nil {
		t.Error("a request went through a link that is down")
	}
}
