package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// instance is one launch of the plugin: its process and connection.
type instance struct {
	pc     *plugin.Client
	rpc    pluginv1.PluginClient
	broker *plugin.GRPCBroker
	pid    int
	stderr *tail

	mu   sync.Mutex
	hubs []*pluginwire.HubService // Hub services served to this launch, newest last
}

// tap is the hub's side of pluginwire.PluginMap with a window on the
// connection: it makes the same *pluginwire.Client, and keeps the broker and the connection
// so the kit can serve its own Hub and speak the protocol directly.
type tap struct {
	pluginwire.GRPCPlugin

	mu     sync.Mutex
	broker *plugin.GRPCBroker
	conn   *grpc.ClientConn
}

func (t *tap) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	t.mu.Lock()
	t.broker, t.conn = broker, c
	t.mu.Unlock()
	return t.GRPCPlugin.GRPCClient(ctx, broker, c)
}

// launch starts the plugin binary as the hub's plugin host does
// (pluginwire.ClientConfig: checksum, gRPC only, AutoMTLS, no inherited
// environment), offering the handshake hs, and connects to it.
func (s *session) launch(hs plugin.HandshakeConfig) (*instance, error) {
	cmd := exec.Command(s.opts.Binary, s.opts.Args...)
	cmd.Env = s.opts.Env
	ownProcess(cmd)
	cfg := pluginwire.ClientConfig(cmd, s.sum)
	cfg.HandshakeConfig = hs
	t := &tap{}
	cfg.Plugins = map[string]plugin.Plugin{pluginwire.PluginName(): t}
	stderr := newTail(s.opts.PluginStderr)
	cfg.Stderr = stderr
	cfg.SyncStderr = stderr
	cfg.Logger = hclog.NewNullLogger()
	cfg.StartTimeout = s.opts.StartTimeout
	pc := plugin.NewClient(cfg)
	if _, err := pluginwire.Dispense(pc); err != nil {
		pc.Kill()
		return nil, withStderr(err, stderr)
	}
	t.mu.Lock()
	inst := &instance{pc: pc, rpc: pluginv1.NewPluginClient(t.conn), broker: t.broker, stderr: stderr}
	t.mu.Unlock()
	if rc := pc.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	s.track(inst)
	return inst, nil
}

// withStderr adds what the plugin last wrote on stderr to err.
func withStderr(err error, t *tail) error {
	if out := t.String(); out != "" {
		return fmt.Errorf("%w\nthe plugin's stderr ended with:\n%s", err, indent(out))
	}
	return err
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// configure hands config to the plugin with the kit's Hub served through
// the broker, as pluginwire.Client.Configure does, but without checking config
// first: the kit must see whether the plugin refuses a bad one itself. A
// nil hub configures the plugin without one.
func (i *instance) configure(ctx context.Context, config json.RawMessage, hub *hub) *sdk.Error {
	var id uint32
	var cb *pluginwire.HubService
	if hub != nil {
		id, cb = pluginwire.ServeHub(i.broker, hub)
	}
	resp, err := i.rpc.Configure(ctx, &pluginv1.ConfigureRequest{Config: config, HubBrokerId: id})
	var e *sdk.Error
	if err != nil {
		e = callError(ctx, "configure", err)
	} else {
		e = pluginwire.FromWireError(resp.GetError())
	}
	if e != nil {
		if cb != nil {
			cb.Abort()
		}
		return e
	}
	if cb != nil {
		i.mu.Lock()
		old := i.hubs
		i.hubs = []*pluginwire.HubService{cb}
		i.mu.Unlock()
		for _, o := range old {
			o.Abort()
		}
	}
	return nil
}

// callError is a failed call's error as the hub sees it: the deadline,
// the connection, or the peer's gRPC status.
func callError(ctx context.Context, op string, err error) *sdk.Error {
	if ctx.Err() != nil {
		return &sdk.Error{Code: sdk.CodeTimeout, Retryable: true, Message: op + ": no answer in time: " + err.Error()}
	}
	return &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: op + ": " + err.Error()}
}

// handle delivers m and returns the plugin's replies and in-band error.
// A failed call (deadline, broken connection) is returned as a retryable
// error with transport set.
func (i *instance) handle(ctx context.Context, m sdk.Message) (replies []sdk.Message, e *sdk.Error, transport bool) {
	resp, err := i.rpc.Handle(ctx, pluginwire.ToEnvelope(m))
	if err != nil {
		return nil, callError(ctx, "handle "+m.Type, err), true
	}
	return pluginwire.FromEnvelopes(resp.GetReplies()), pluginwire.FromWireError(resp.GetError()), false
}

// close ends the launch: the Hub services, the process, go-plugin's
// goroutines. Safe to call more than once.
func (i *instance) close() {
	i.mu.Lock()
	hubs := i.hubs
	i.hubs = nil
	i.mu.Unlock()
	for _, cb := range hubs {
		cb.Abort()
	}
	if !i.pc.Exited() && i.pid > 0 {
		// The kit has already judged the shutdown; go-plugin's Kill would
		// wait two more seconds for a graceful exit.
		killPID(i.pid)
	}
	i.pc.Kill()
}

// waitExit waits until the process has exited, for at most d.
func (i *instance) waitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !i.pc.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// tail keeps the last lines a plugin wrote on stderr, for error messages,
// and copies everything to an optional writer.
type tail struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	copy io.Writer
}

const tailMax = 4 << 10

func newTail(w io.Writer) *tail { return &tail{copy: w} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > 2*tailMax {
		b := t.buf.Bytes()[t.buf.Len()-tailMax:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		rest := append([]byte(nil), b...)
		t.buf.Reset()
		t.buf.Write(rest)
	}
	if t.copy != nil {
		_, _ = t.copy.Write(p)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf.Bytes()
	if len(b) > tailMax {
		b = b[len(b)-tailMax:]
	}
	return string(b)
}
