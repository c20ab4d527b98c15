package pos_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// pluginBinary builds citycard-plugin-pos once per test run and returns
// its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	built.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			built.err = err
			return
		}
		dir, err := os.MkdirTemp("", "citycard-pos-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		built.path = filepath.Join(dir, "citycard-plugin-pos")
		if out, err := exec.Command(goTool, "build", "-o", built.path, "./cmd/citycard-plugin-pos").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		raw, err := os.ReadFile(built.path)
		if err != nil {
			built.err = err
			return
		}
		sum := sha256.Sum256(raw)
		built.sum = sum[:]
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path, built.sum
}

var built struct {
	once      sync.Once
	dir, path string
	sum       []byte
	err       error
}

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), finds its front end through
// pos.terminal.status.v1 and has a terminal sign on and pay through it.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	pc := plugin.NewClient(sdk.ClientConfig(exec.Command(bin), sum))
	defer pc.Kill()
	c, err := sdk.Dispense(pc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != pos.Name || len(d.Handles) != 1 || len(d.Sends) != 6 {
		t.Fatalf("descriptor = %+v", d)
	}
	cfg, err := json.Marshal(config())
	if err != nil {
		t.Fatal(err)
	}
	hub := plugintest.NewFakeHub()
	bk := newBank()
	hub.RespondWith(bk.respond)
	if err := c.Configure(ctx, cfg, hub); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	replies, err := c.Handle(ctx, plugintest.NewMessage(pos.TypeTerminalStatus, map[string]any{"terminal": term1}))
	var s pos.TerminalState
	if err != nil || len(replies) != 1 || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" || !s.Known {
		t.Fatalf("status: %+v %v", replies, err)
	}
	term, err := sim.New(sim.Config{Addr: s.Listen, TerminalID: term1, MerchantID: acceptor, MasterKey: key(t, tmkHex)})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if rc, err := term.SignOn(ctx); err != nil || rc != "00" {
		t.Fatalf("sign-on: %s %v", rc, err)
	}
	r, err := term.Purchase(ctx, sim.Card{PAN: alice, PIN: "123456"}, 1234)
	if err != nil || r.RC != "00" {
		t.Fatalf("purchase: %+v %v", r, err)
	}
	if v, err := term.Void(ctx, r, sim.Card{PAN: alice}); err != nil || v.RC != "00" {
		t.Fatalf("void: %+v %v", v, err)
	}
	if bk.balance(alice) != 50000 || len(hub.Submitted()) != 2 {
		t.Errorf("alice %d, hub got %d messages", bk.balance(alice), len(hub.Submitted()))
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestConformance proves the plugin binary with the conformance kit, as a
// partner proves theirs.
func TestConformance(t *testing.T) {
	bin, _ := pluginBinary(t)
	mustJSON := func(v any) json.RawMessage {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	f := &conformance.File{
		Config: mustJSON(config()),
		Samples: []conformance.Sample{
			{Type: pos.TypeTerminalStatus, Payload: mustJSON(map[string]any{"terminal": term1})},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := conformance.Run(ctx, conformance.Options{Binary: bin, File: f})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	_ = r.WriteTable(&table)
	t.Logf("conformance of the pos plugin:\n%s", table.String())
	// CI keeps the JUnit report of every reference plugin.
	if dir := os.Getenv("CITYCARD_CONFORMANCE_OUT"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "pos.xml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJUnit(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !r.OK() || r.Count(conformance.Fail)+r.Count(conformance.Error) > 0 {
		t.Errorf("the plugin does not conform:\n%s", table.String())
	}
}
