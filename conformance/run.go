package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// Options says which plugin to prove and how.
type Options struct {
	// Binary is the plugin executable; Args are passed to it.
	Binary string
	Args   []string
	// Env is the plugin's whole environment: like the hub, the kit passes
	// none of its own.
	Env []string
	// File is the conformance file; nil runs with an empty configuration
	// and payloads made from the plugin's schemas.
	File *File
	// Only limits the run to these requirement ids and the ones they
	// depend on; empty runs every check.
	Only []string
	// Progress, when set, is called with each result as its check ends.
	Progress func(Result)
	// PluginStderr, when set, receives everything the plugin writes on
	// stderr (its logs).
	PluginStderr io.Writer

	// StartTimeout bounds a launch up to the handshake (default 10s).
	StartTimeout time.Duration
	// CallTimeout bounds Describe, Configure, Health and each Handle
	// (default 5s).
	CallTimeout time.Duration
	// SlowDeadline is the Handle deadline while the hub does not answer
	// (default 2s).
	SlowDeadline time.Duration
	// StopTimeout bounds Stop (default 5s); ExitTimeout the wait for the
	// process to exit after it (default 3s).
	StopTimeout time.Duration
	ExitTimeout time.Duration
	// Concurrency is how many Handle calls the concurrency check makes at
	// once (default 64).
	Concurrency int
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.StartTimeout, 10*time.Second)
	set(&o.CallTimeout, 5*time.Second)
	set(&o.SlowDeadline, 2*time.Second)
	set(&o.StopTimeout, 5*time.Second)
	set(&o.ExitTimeout, 3*time.Second)
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.File == nil {
		o.File = &File{}
	}
}

// session is the state one run shares between its checks.
type session struct {
	opts Options
	sum  []byte
	hub  *hub

	inst     *instance // the launch the checks talk to; nil when none runs
	desc     sdk.Descriptor
	val      pluginwire.Validator
	handled  map[string]sdk.MessageType
	samples  []sample  // valid messages to deliver, one or more per handled type
	problems []string  // why some handled type has no usable sample
	touching []int     // indexes of samples whose handling called the hub
	emitted  []emitted // replies to the samples, for CC-PLUGIN-010

	mu       sync.Mutex
	launched []*instance // every launch, closed at the end
}

// Run proves the plugin binary in opts.Binary against SPEC.md and reports
// each check. The error is for a run that could not start at all (no such
// binary, an unknown requirement id); a plugin that fails is a Report whose
// OK is false. Run leaves no process of the plugin behind.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	opts.Binary = bin
	sum, err := fileSum(bin)
	if err != nil {
		return nil, fmt.Errorf("conformance: plugin binary: %w", err)
	}
	selected, err := selection(opts.Only)
	if err != nil {
		return nil, err
	}
	s := &session{opts: opts, sum: sum, hub: newHub(opts.File.Hub, opts.SlowDeadline+2*time.Second)}
	defer s.closeAll()

	r := &Report{Binary: bin, Started: time.Now()}
	status := map[string]Status{}
	for _, c := range checks {
		if !selected[c.ID] {
			continue
		}
		res := Result{ID: c.ID, Level: c.Level, Title: c.Title}
		start := time.Now()
		if blocked := c.blockedBy(status); blocked != "" {
			res.Status, res.Message = Skip, fmt.Sprintf("not run: %s did not pass", blocked)
			status[c.ID] = notRun
		} else if err := ctx.Err(); err != nil {
			res.Status, res.Message = Error, "not run: "+err.Error()
		} else {
			s.hub.setPhase(c.ID)
			res.Status, res.Message = s.runCheck(ctx, c)
		}
		res.Duration = time.Since(start)
		if status[c.ID] != notRun {
			status[c.ID] = res.Status
		}
		if s.desc.Name != "" {
			r.Plugin, r.Version = s.desc.Name, s.desc.Version
		}
		r.Results = append(r.Results, res)
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}
	r.Duration = time.Since(r.Started)
	return r, nil
}

// runCheck runs one check; a panic in the kit is the kit's error, not the
// plugin's failure, and must not take the other checks with it.
func (s *session) runCheck(ctx context.Context, c check) (st Status, msg string) {
	defer func() {
		if r := recover(); r != nil {
			st, msg = Error, fmt.Sprintf("the conformance kit failed: %v\n%s", r, debug.Stack())
		}
	}()
	return c.run(ctx, s)
}

// selection expands the requested ids with their dependencies.
func selection(only []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(only) == 0 {
		for _, c := range checks {
			out[c.ID] = true
		}
		return out, nil
	}
	byID := map[string]*check{}
	for i := range checks {
		byID[checks[i].ID] = &checks[i]
	}
	var add func(id string) error
	add = func(id string) error {
		c, ok := byID[id]
		if !ok {
			return fmt.Errorf("conformance: no requirement %s (see conformance/SPEC.md)", id)
		}
		if out[id] {
			return nil
		}
		out[id] = true
		for _, n := range c.Needs {
			if err := add(n); err != nil {
				return err
			}
		}
		return nil
	}
	for _, id := range only {
		if err := add(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// notRun marks, among the statuses Run keeps, a check skipped because a
// dependency did not pass: unlike a skip for having nothing to check, it
// blocks the checks that depend on it in turn.
const notRun Status = "not run"

// blockedBy returns the first dependency of c that did not pass, or "".
// A dependency skipped for having nothing to check does not block: c then
// finds nothing to check itself.
func (c *check) blockedBy(status map[string]Status) string {
	for _, n := range c.Needs {
		if st := status[n]; st != Pass && st != Skip {
			return n
		}
	}
	return ""
}

func fileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func (s *session) track(i *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.launched = append(s.launched, i)
}

func (s *session) closeAll() {
	s.mu.Lock()
	all := s.launched
	s.launched = nil
	s.mu.Unlock()
	for _, i := range all {
		i.close()
	}
	// Calls to a slow hub end when their process is gone.
	s.hub.wait(s.opts.SlowDeadline + 5*time.Second)
}

// call returns a context bounded by the call timeout.
func (s *session) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.CallTimeout)
}

// message completes m as the hub sends it: a fresh id, source "hub", the
// schema id the plugin declared for the type, correlation id and time.
func (s *session) message(m sdk.Message) sdk.Message {
	if m.ID == "" {
		m.ID = sdk.NewID()
	}
	m.Source = sdk.HubSource
	if m.SchemaID == "" {
		m.SchemaID = s.handled[m.Type].SchemaID
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.ID
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	return m
}

// launchConfigured launches the plugin, checks it describes itself as
// before, and configures it with the file's configuration and the hub.
func (s *session) launchConfigured(ctx context.Context) (*instance, error) {
	inst, err := s.launch(pluginwire.Handshake())
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := inst.rpc.Describe(cctx, &pluginv1.DescribeRequest{})
	if err != nil {
		inst.close()
		return nil, withStderr(fmt.Errorf("describe: %w", err), inst.stderr)
	}
	if a, b := descriptorJSON(pluginwire.FromDescriptor(resp)), descriptorJSON(s.desc); a != b {
		inst.close()
		return nil, errors.New("after a new launch the plugin describes itself differently")
	}
	if e := inst.configure(cctx, s.config(), s.hub); e != nil {
		inst.close()
		return nil, withStderr(fmt.Errorf("configure: %w", e), inst.stderr)
	}
	return inst, nil
}

// config is the file's configuration, {} when it has none.
func (s *session) config() json.RawMessage {
	if len(s.opts.File.Config) == 0 {
		return json.RawMessage(`{}`)
	}
	return s.opts.File.Config
}

func descriptorJSON(d sdk.Descriptor) string {
	b, _ := json.Marshal(d)
	return string(b)
}
