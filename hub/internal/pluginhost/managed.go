package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
)

// crashGrace is how long a call whose connection broke waits for the
// supervisor to confirm the crash: many exit polls.
const crashGrace = time.Second

// managed is one plugin across all its launches.
type managed struct {
	h    *Host
	spec Spec
	sum  []byte
	hub  sdk.Hub
	log  *slog.Logger

	mu       sync.Mutex
	state    State
	since    time.Time
	restarts int
	lastErr  string
	desc     sdk.Descriptor
	inst     *instance // nil while no process runs
}

// instance is one launch: one process and its connection.
type instance struct {
	pc     *plugin.Client
	c      *pluginwire.Client
	cmd    *exec.Cmd // its ProcessState is safe to read once pc.Kill returns
	pid    int
	proc   *exitWatch
	stderr []*lineLogger

	// ctx is cancelled when the instance is declared dead or stopped; it
	// cuts short every call still in flight to it.
	ctx  context.Context
	kill context.CancelFunc

	mu       sync.Mutex
	next     uint64
	inFlight map[uint64]sdk.Message
}

func (h *Host) newManaged(s Spec) *managed {
	sum, _ := s.sum() // checked by Start
	var hub sdk.Hub
	if h.opts.Hub != nil {
		hub = h.opts.Hub(s.Name)
	}
	return &managed{h: h, spec: s, sum: sum, hub: hub, log: h.log.With("plugin", s.Name),
		state: StateStarting, since: time.Now()}
}

// setState records a transition; errText, when not empty, becomes LastError.
func (p *managed) setState(st State, errText string) {
	p.mu.Lock()
	p.setStateLocked(st, errText)
	p.mu.Unlock()
}

func (p *managed) setStateLocked(st State, errText string) {
	if p.state != st {
		p.state, p.since = st, time.Now()
	}
	if errText != "" {
		p.lastErr = errText
	}
	up := 0.0
	if st == StateRunning {
		up = 1
	}
	p.h.met.up.WithLabelValues(p.spec.Name).Set(up)
}

// noticeExitLocked marks a running plugin whose process the kernel says
// is gone, when a reader gets there before the supervisor's goroutine has
// been scheduled: no one may see a dead process as running.
func (p *managed) noticeExitLocked() {
	if p.inst != nil && p.state == StateRunning && p.inst.proc.exited() {
		p.setStateLocked(StateRestarting, p.inst.proc.reason())
	}
}

func (p *managed) status() PluginStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noticeExitLocked()
	s := PluginStatus{Name: p.spec.Name, State: p.state, Restarts: p.restarts, LastError: p.lastErr, Since: p.since}
	if p.inst != nil && p.state == StateRunning {
		s.PID = p.inst.pid
	}
	return s
}

// start is the first launch, from Host.Start.
func (p *managed) start(ctx context.Context) error {
	inst, desc, err := p.launch(ctx)
	if err != nil {
		p.setState(StateFailed, err.Error())
		return err
	}
	p.mu.Lock()
	p.inst, p.desc = inst, desc
	p.setStateLocked(StateRunning, "")
	p.mu.Unlock()
	return nil
}

// launch runs the life cycle up to a configured plugin: process (checksum
// checked by go-plugin before exec), Describe, config check, Configure.
func (p *managed) launch(ctx context.Context) (*instance, sdk.Descriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, p.h.opts.StartTimeout)
	defer cancel()
	name := p.spec.Name

	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = p.spec.Env
	ownProcess(cmd)
	cfg := pluginwire.ClientConfig(cmd, p.sum)
	// sdk.Serve hands the plugin's own stderr writes to go-plugin, which
	// streams them over gRPC to SyncStderr; the process's real stderr
	// (Stderr) carries what is written outside that, such as go-plugin's
	// own log and a panic's trace. Two loggers, so their partial lines
	// never mix.
	stderr := []*lineLogger{newLineLogger(p.h.log, name), newLineLogger(p.h.log, name)}
	cfg.SyncStderr = stderr[0]
	cfg.Stderr = stderr[1]
	// go-plugin's own chatter would duplicate every stderr line at debug
	// and report what the host logs itself; its failures come back as errors.
	cfg.Logger = hclog.NewNullLogger()
	cfg.StartTimeout = p.h.opts.StartTimeout
	pc := plugin.NewClient(cfg)
	var proc *exitWatch
	fail := func(err error) (*instance, sdk.Descriptor, error) {
		pc.Kill()
		if proc != nil {
			proc.stop()
		}
		flush(stderr)
		return nil, sdk.Descriptor{}, err
	}

	c, err := pluginwire.Dispense(pc)
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fail(fmt.Errorf("pluginhost: plugin %s: binary %s does not match its sha256 %s: refused to run it: %w",
			name, p.spec.Path, p.spec.SHA256, err))
	}
	if err != nil {
		return fail(fmt.Errorf("pluginhost: plugin %s: launching %s: %w", name, p.spec.Path, err))
	}
	pid := 0
	if rc := pc.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	// Watched from here on, so a process that dies while being described
	// or configured is not taken for a running one either.
	proc = watchExit(pid, pc.Exited)
	desc, err := c.Describe(ctx)
	if err != nil {
		return fail(fmt.Errorf("pluginhost: plugin %s: describe: %w", name, err))
	}
	v, err := pluginwire.NewValidator(desc)
	if err != nil {
		return fail(fmt.Errorf("pluginhost: plugin %s: %w", name, err))
	}
	// Checked here, before Configure, so a bad configuration is refused
	// with the schema error and the plugin never sees it.
	if err := v.CheckConfig(p.spec.Config); err != nil {
		return fail(fmt.Errorf("pluginhost: plugin %s: configuration refused: %w", name, err))
	}
	if err := c.Configure(ctx, p.spec.Config, p.hub); err != nil {
		return fail(fmt.Errorf("pluginhost: plugin %s: configure: %w", name, err))
	}
	ictx, kill := context.WithCancel(context.Background())
	p.log.Info("plugin started", "pid", pid, "version", desc.Version, "path", p.spec.Path)
	return &instance{pc: pc, c: c, cmd: cmd, pid: pid, proc: proc, stderr: stderr, ctx: ictx, kill: kill,
		inFlight: map[uint64]sdk.Message{}}, desc, nil
}

// unavailable is the retryable error of a plugin that cannot take calls.
func (p *managed) unavailable(why string) *sdk.Error {
	return &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true,
		Message: fmt.Sprintf("plugin %s %s; retry later", p.spec.Name, why)}
}

func (p *managed) handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	p.mu.Lock()
	if p.inst != nil && p.state == StateRunning {
		select {
		case <-p.inst.proc.done:
			// Dead, the supervisor not scheduled yet: fail now, not after
			// a round trip to a closed socket.
			p.setStateLocked(StateRestarting, p.inst.proc.reason())
		default:
		}
	}
	inst, state := p.inst, p.state
	p.mu.Unlock()
	if inst == nil || state != StateRunning {
		return nil, p.unavailable("is " + string(state))
	}
	if m.ID == "" {
		// Set here so the message OnCrash receives is the one the plugin got.
		m.ID = sdk.NewID()
	}
	id, ok := inst.enter(m)
	if !ok {
		return nil, p.unavailable("crashed")
	}
	defer inst.leave(id)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.h.opts.HandleTimeout)
		defer cancel()
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(inst.ctx, cancel)()
	replies, err := inst.c.Handle(cctx, m)
	if st, ok := grpcstatus.FromError(err); ok && st.Code() == codes.Unavailable && ctx.Err() == nil {
		// The connection broke, which usually means the process died a
		// moment before the supervisor noticed. Stay in flight until it
		// does, so OnCrash is told about this message.
		t := time.NewTimer(crashGrace)
		select {
		case <-inst.ctx.Done():
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil && inst.ctx.Err() != nil && ctx.Err() == nil {
		return nil, p.unavailable(fmt.Sprintf("crashed while handling %s %s", m.Type, m.ID))
	}
	return replies, err
}

// enter records m as in flight, unless the instance is already dead.
func (i *instance) enter(m sdk.Message) (uint64, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ctx.Err() != nil {
		return 0, false
	}
	i.next++
	i.inFlight[i.next] = m
	return i.next, true
}

func (i *instance) leave(id uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.inFlight, id)
}

// die cuts every call in flight short and returns their messages. Under
// i.mu, so no call can enter after the snapshot.
func (i *instance) die() []sdk.Message {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.kill()
	out := make([]sdk.Message, 0, len(i.inFlight))
	for _, m := range i.inFlight {
		out = append(out, m)
	}
	return out
}

// supervise watches the running instance and replaces it when it dies,
// until the host stops.
func (p *managed) supervise() {
	defer p.h.wg.Done()
	life := p.h.life
	bo := p.h.opts.RestartBackoff
	delay := bo.Initial
	for {
		p.mu.Lock()
		inst := p.inst
		p.mu.Unlock()
		up := time.Now()
		reason := p.watch(life, inst)
		if life.Err() != nil {
			return // Stop shuts the instance down
		}

		// Marked before anything that may wait (in-flight calls, reaping,
		// OnCrash), so listings and callers see the truth at once.
		p.mu.Lock()
		p.inst = nil
		p.setStateLocked(StateRestarting, reason)
		p.mu.Unlock()
		inFlight := inst.die()
		p.log.Warn("plugin crashed; restarting", "pid", inst.pid, "reason", reason,
			"in_flight", len(inFlight), "backoff", delay)
		inst.pc.Kill() // reaps the process and go-plugin's goroutines
		inst.proc.stop()
		flush(inst.stderr)
		if ps := inst.cmd.ProcessState; ps != nil && reason == exitedUnknown {
			// The pidfd could not say how it ended (go-plugin reaped it
			// first, or no pidfd): the reaped state can.
			inst.proc.setWhy(ps.String())
			p.mu.Lock()
			if p.lastErr == reason {
				p.lastErr = inst.proc.reason()
			}
			p.mu.Unlock()
		}
		if p.h.opts.OnCrash != nil {
			p.h.opts.OnCrash(p.spec.Name, inFlight)
		}
		if time.Since(up) >= bo.Stable {
			delay = bo.Initial
		}

		for {
			t := time.NewTimer(delay)
			select {
			case <-life.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = bo.next(delay)
			next, desc, err := p.launch(life)
			if err != nil {
				if life.Err() != nil {
					return
				}
				p.setState(StateFailed, err.Error())
				p.log.Error("plugin restart failed", "error", err, "next_attempt_in", delay)
				continue
			}
			// Stop waits for this goroutine before shutting p.inst down, so
			// an instance published here is never left running.
			p.mu.Lock()
			p.inst, p.desc = next, desc
			p.restarts++
			p.setStateLocked(StateRunning, "")
			p.mu.Unlock()
			p.h.met.restarts.WithLabelValues(p.spec.Name).Inc()
			break
		}
	}
}

// watch returns why inst is dead, or "" when life ends first. The process
// watch and the health ping are separate: a ping waits up to
// HealthTimeout on a busy plugin, and must not hold up seeing it die.
func (p *managed) watch(life context.Context, inst *instance) string {
	ctx, cancel := context.WithCancel(life)
	var pings sync.WaitGroup
	defer func() {
		cancel()
		pings.Wait()
	}()
	health := time.NewTicker(p.h.opts.HealthInterval)
	defer health.Stop()
	results := make(chan error, 1)
	pinging := false
	fails := 0
	for {
		select {
		case <-life.Done():
			return ""
		case <-inst.proc.done:
			return inst.proc.reason()
		case <-health.C:
			if pinging {
				continue // one at a time; a slow ping ends by its own timeout
			}
			pinging = true
			pings.Go(func() {
				pctx, done := context.WithTimeout(ctx, p.h.opts.HealthTimeout)
				defer done()
				results <- inst.c.Health(pctx)
			})
		case err := <-results:
			pinging = false
			if life.Err() != nil {
				return ""
			}
			if inst.proc.exited() {
				return inst.proc.reason()
			}
			if err == nil {
				fails = 0
				continue
			}
			fails++
			p.log.Warn("plugin health check failed", "error", err, "failures", fails)
			if fails >= p.h.opts.HealthFailures {
				return fmt.Sprintf("%d health checks failed in a row, last: %v", fails, err)
			}
		}
	}
}

// shutdown stops the running instance gracefully, then ends its process.
// Calls in flight get until the plugin's Stop returns to finish.
func (p *managed) shutdown(ctx context.Context) error {
	p.mu.Lock()
	inst := p.inst
	p.inst = nil
	p.setStateLocked(StateStopped, "")
	p.mu.Unlock()
	if inst == nil {
		return nil
	}
	var err error
	if !inst.proc.exited() {
		err = inst.c.Stop(ctx)
	}
	inst.die()
	inst.pc.Kill()
	inst.proc.stop()
	flush(inst.stderr)
	p.log.Info("plugin stopped", "pid", inst.pid)
	if err != nil {
		return fmt.Errorf("pluginhost: stopping plugin %s: %w", p.spec.Name, err)
	}
	return nil
}

func flush(ls []*lineLogger) {
	for _, l := range ls {
		l.flush()
	}
}
