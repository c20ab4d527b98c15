package transit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// pending is one online tap waiting for its micro-batch's answer.
type pending struct {
	tap      tap.Tap
	deadline time.Time
	// state moves once from waiting to sent (the batcher took it) or to
	// abandoned (its validator was told to decide offline first), so a tap
	// whose validator gave up is never sent.
	state atomic.Int32
	done  chan answer // buffered: the batcher never waits on a validator
}

const (
	waiting int32 = iota
	taken
	abandoned
)

// answer is the hub's answer to one online tap, or why there is none.
type answer struct {
	result      TapResult
	version     int64
	correlation string
	err         error
}

// batcher gathers online taps from many validators into micro-batches, one
// transit.taps.v1 Submit each: a call to the hub costs far more than a tap.
type batcher struct {
	st     *state
	in     chan *pending
	window time.Duration
	size   int
	slots  chan struct{} // batches at the hub at once
	stop   chan struct{}
	done   chan struct{}
	calls  sync.WaitGroup
}

// queueLength bounds the taps waiting for a batch; past it the front end
// answers at once that the validator must decide offline.
const queueLength = 8192

func newBatcher(st *state, window time.Duration, size, inFlight int) *batcher {
	b := &batcher{st: st, in: make(chan *pending, queueLength), window: window, size: size,
		slots: make(chan struct{}, inFlight), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// add queues p, or reports that the queue is full.
func (b *batcher) add(p *pending) bool {
	select {
	case b.in <- p:
		return true
	default:
		return false
	}
}

func (b *batcher) run() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var batch []*pending
		select {
		case p := <-b.in:
			batch = append(batch, p)
		case <-b.stop:
			b.drain()
			return
		}
		if b.window > 0 {
			timer.Reset(b.window)
		collect:
			for len(batch) < b.size {
				select {
				case p := <-b.in:
					batch = append(batch, p)
				case <-timer.C:
					break collect
				}
			}
			timer.Stop()
		}
		// Whatever queued meanwhile joins, up to the size: a busy hub makes
		// batches larger rather than the queue longer.
	more:
		for len(batch) < b.size {
			select {
			case p := <-b.in:
				batch = append(batch, p)
			default:
				break more
			}
		}
		b.slots <- struct{}{}
		b.calls.Add(1)
		go func() {
			defer func() { <-b.slots; b.calls.Done() }()
			b.submit(batch)
		}()
	}
}

// drain answers what is still queued at shutdown: decide offline.
func (b *batcher) drain() {
	for {
		select {
		case p := <-b.in:
			p.done <- answer{err: &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the transit plugin is stopping"}}
		default:
			return
		}
	}
}

// close stops the batcher and waits for the batches at the hub.
func (b *batcher) close() {
	close(b.stop)
	<-b.done
	b.calls.Wait()
}

func (b *batcher) submit(batch []*pending) {
	live := batch[:0]
	var deadline time.Time
	for _, p := range batch {
		if p.state.CompareAndSwap(waiting, taken) {
			live = append(live, p)
			if p.deadline.After(deadline) {
				deadline = p.deadline
			}
		}
	}
	if len(live) == 0 {
		return
	}
	taps := make([]tap.Tap, len(live))
	for i, p := range live {
		taps[i] = p.tap
	}
	correlation := sdk.NewID()
	// No call outlives the validator that waits longest for it.
	ctx, cancel := context.WithDeadline(b.st.ctx, deadline)
	defer cancel()
	start := time.Now()
	out, err := b.st.sendTaps(ctx, taps, correlation, "online")
	b.st.stats.onlineBatches.Add(1)
	if err != nil {
		b.st.log.Warn("online taps not answered", "correlation_id", correlation, "taps", len(live), "err", err,
			"took_ms", time.Since(start).Milliseconds())
		for _, p := range live {
			p.done <- answer{err: err, correlation: correlation}
		}
		return
	}
	b.st.log.Debug("online taps answered", "correlation_id", correlation, "taps", len(live), "took_ms", time.Since(start).Milliseconds())
	b.st.noticeVersion(out.version)
	for i, p := range live {
		p.done <- answer{result: out.results[i], version: out.version, correlation: correlation}
	}
}
