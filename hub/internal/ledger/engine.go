// Package ledger is the hub's double-entry ledger and its single writer.
//
// Every change to money, cards and holds is an Op submitted to the Engine.
// One goroutine drains the queue, applies each op to in-memory state, and
// commits the whole group in one database transaction (group commit). Each
// request is answered with its own result only after its batch is durable,
// and an op that fails leaves no trace on the others. Hot accounts are
// written once per batch, however many transfers touched them.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
)

// Config tunes the writer.
type Config struct {
	// MaxBatch caps how many requests share one commit (default 1000).
	MaxBatch int
	// Linger is how long the writer waits for more requests when the queue
	// runs dry before a batch is full (default 0: commit at once; under load
	// batches fill while the previous commit is in flight).
	Linger time.Duration
	// QueueSize bounds the request queue (default 4*MaxBatch).
	QueueSize int
	// CacheLimit: when more rows than this are cached, the cache is dropped
	// after a commit and reloaded on demand (default 1,000,000).
	CacheLimit int
	// Now overrides the clock (tests).
	Now func() time.Time
	// Observe, if set, is told the size and commit latency of every batch.
	Observe func(size int, commit time.Duration, err error)
	Logger  *slog.Logger
	// TransferEvents makes every batch emit one TopicTransferPosted
	// message per transfer in its outbox (store.Batch.Outbox), written in
	// the batch's own transaction where the store can (PostgreSQL with the
	// router on the same database).
	TransferEvents bool
}

// TopicTransferPosted is the router topic of the ledger's transfer events.
const TopicTransferPosted = "hub.ledger.transfer.posted.v1"

// TransferEvent is the payload of a TopicTransferPosted message: what
// clearing, notifications and risk monitoring need of a committed transfer.
type TransferEvent struct {
	ID       string    `json:"id"`
	Batch    int64     `json:"batch"`
	Kind     string    `json:"kind"`
	Card     string    `json:"card,omitempty"`
	Pending  bool      `json:"pending,omitempty"`
	Ref      string    `json:"ref,omitempty"`
	Amount   int64     `json:"amount"`
	Currency string    `json:"currency"`
	Channel  string    `json:"channel,omitempty"`
	Merchant string    `json:"merchant,omitempty"`
	Terminal string    `json:"terminal,omitempty"`
	At       time.Time `json:"at"`
}

// outbox returns the transfer events of a batch's transfers.
func outbox(ts []store.Transfer) []store.OutboxMessage {
	out := make([]store.OutboxMessage, len(ts))
	for i, t := range ts {
		ev := TransferEvent{ID: strconv.FormatInt(t.ID, 10), Batch: t.Batch, Kind: t.Kind, Card: t.Card, Pending: t.Pending,
			Amount: t.Amount, Currency: t.Currency, Channel: t.Channel, Merchant: t.Merchant, Terminal: t.Terminal, At: t.At}
		if t.Ref != 0 {
			ev.Ref = strconv.FormatInt(t.Ref, 10)
		}
		body, _ := json.Marshal(ev) // plain strings, numbers and a time: cannot fail
		// The transfer id makes the message id: a consumer can tell a
		// redelivery from a new transfer.
		out[i] = store.OutboxMessage{Topic: TopicTransferPosted, UUID: "ledger-transfer-" + ev.ID, Payload: body}
	}
	return out
}

// Outcome is the answer to one submitted op.
type Outcome struct {
	// Result is what Apply returned; nil when Replayed.
	Result any
	// Status and Body are the encoded answer (from SubmitOptions.Encode, or
	// the stored answer when Replayed).
	Status int
	Body   []byte
	// Replayed is true when the idempotency key had been used with the same
	// request before: nothing was written and the first answer is returned.
	Replayed bool
}

// Encoder renders a result as the answer that is stored with an
// idempotency key and returned on a retry.
type Encoder func(result any) (status int, body []byte, err error)

// SubmitOptions carry what the writer records beside the op, in the same
// transaction.
type SubmitOptions struct {
	Idempotency *store.IdemKey
	RequestHash string
	Encode      Encoder
	// Audit, if set, is appended with Outcome filled in.
	Audit *store.AuditEntry
}

// Outcomer lets a result say how it reads in the audit log ("ok",
// "declined:insufficient_funds"…).
type Outcomer interface{ AuditOutcome() string }

// ErrClosed is returned by Submit after Close.
var ErrClosed = fault.E(fault.Unavailable, "", "the ledger writer is shut down")

type request struct {
	ctx  context.Context
	op   Op
	opts SubmitOptions
	done chan reply
}

type reply struct {
	out Outcome
	err error
}

type heldTransfer struct {
	store.Hold
	Transfer store.Transfer
}

// Engine is the single writer of one ledger shard.
type Engine struct {
	st  store.Store
	cfg Config
	log *slog.Logger

	reqs    chan *request
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	// The committer takes one batch at a time on commits and answers each
	// with its commit's error on results. Everything else — the batch in
	// flight, a failure, the reload after it — is the writer's alone.
	commits       chan *built
	results       chan error
	committerDone chan struct{}
	// unready holds why the writer refuses writes (a *string), nil while
	// it serves: set from a failed commit until a reload from the store
	// has succeeded.
	unready atomic.Pointer[string]

	// state owned by the writer goroutine
	head     store.Head
	accounts map[string]*store.Account
	byID     map[int64]*store.Account
	cards    map[string]*store.Card
	holds    map[int64]*heldTransfer
	idem     map[store.IdemKey]store.IdemRecord
	reversed map[int64]bool // transfers known to have been reversed
	checked  map[int64]bool // transfers whose reversal state is known
	tr       transitState
}

// Open reads the ledger head and starts the writer.
func Open(ctx context.Context, st store.Store, cfg Config) (*Engine, error) {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4 * cfg.MaxBatch
	}
	if cfg.CacheLimit <= 0 {
		cfg.CacheLimit = 1_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{
		st: st, cfg: cfg, log: cfg.Logger,
		reqs:          make(chan *request, cfg.QueueSize),
		stop:          make(chan struct{}),
		stopped:       make(chan struct{}),
		commits:       make(chan *built, 1),
		results:       make(chan error, 1),
		committerDone: make(chan struct{}),
	}
	if err := e.reset(ctx); err != nil {
		return nil, err
	}
	go e.run()
	go e.commit()
	return e, nil
}

// Store is the store the engine writes to.
func (e *Engine) Store() store.Store { return e.st }

// Ready reports whether the writer serves: nil, or a retryable
// unavailable error while it refuses writes because a commit failed and
// its state has not yet been reloaded from the store.
func (e *Engine) Ready() error {
	if why := e.unready.Load(); why != nil {
		return fault.E(fault.Unavailable, "", *why)
	}
	return nil
}

func (e *Engine) reset(ctx context.Context) error {
	h, err := e.st.Head(ctx)
	if err != nil {
		return fmt.Errorf("ledger: read head: %w", err)
	}
	e.head = h
	e.accounts = make(map[string]*store.Account)
	e.byID = make(map[int64]*store.Account)
	e.cards = make(map[string]*store.Card)
	e.holds = make(map[int64]*heldTransfer)
	e.idem = make(map[store.IdemKey]store.IdemRecord)
	e.reversed = make(map[int64]bool)
	e.checked = make(map[int64]bool)
	if err := e.resetTransit(ctx); err != nil {
		return fmt.Errorf("ledger: read the deny list: %w", err)
	}
	return nil
}

// Submit queues op and waits for its batch to commit. If ctx ends while the
// op is still queued the op is dropped; once its batch is being written the
// caller still gets the answer, so an acknowledged write is never lost.
func (e *Engine) Submit(ctx context.Context, op Op, opts SubmitOptions) (Outcome, error) {
	r := &request{ctx: ctx, op: op, opts: opts, done: make(chan reply, 1)}
	select {
	case <-e.stop:
		return Outcome{}, ErrClosed
	default:
	}
	select {
	case e.reqs <- r:
	case <-e.stop:
		return Outcome{}, ErrClosed
	case <-ctx.Done():
		return Outcome{}, fault.Wrap(fault.Timeout, ctx.Err())
	}
	select {
	case rep := <-r.done:
		return rep.out, rep.err
	case <-e.stopped:
		// A request queued just as the writer stopped was never taken.
		// Every request the writer took is answered before it stops, so
		// no answer now means nothing was written.
		select {
		case rep := <-r.done:
			return rep.out, rep.err
		default:
			return Outcome{}, ErrClosed
		}
	}
}

// Close stops taking requests, commits what is queued, and stops the writer.
func (e *Engine) Close() error {
	e.once.Do(func() { close(e.stop) })
	<-e.stopped
	return nil
}

// run is the writer. It applies requests to the batch being built while
// the committer writes the previous one, and hands the batch over as soon
// as the committer is free: a batch holds everything that arrived during
// the previous commit (up to MaxBatch), so batches grow with load and a
// lone request at rest is written at once. At most one batch is in
// flight, and the next one is built on its state: if its commit fails,
// neither is answered from memory.
func (e *Engine) run() {
	defer func() {
		close(e.commits)
		<-e.committerDone
		close(e.stopped)
	}()
	cur := e.newBuilt()
	var inflight *built
	stopping := false // Close was called: drain the queue, then stop
	trim := false     // the cache is to be dropped once nothing is in flight
	for {
		if inflight == nil && len(cur.batch) > 0 && (stopping || trim || e.lingerLeft(cur) <= 0) {
			inflight = e.handOff(cur)
			cur = e.newBuilt()
			if e.unready.Load() != nil {
				// Refused before its write, and the reload failed because
				// the engine is closing: refuse what is queued.
				e.refuseQueued()
				return
			}
		}
		if trim && inflight == nil && len(cur.batch) == 0 {
			// Nothing applied that is not durable: drop the cache.
			trim = false
			if err := e.reset(context.Background()); err != nil {
				// A half-done reload leaves state nobody may build on.
				e.log.Error("ledger: reload after cache trim", "err", err)
				if !e.recover() {
					e.refuseQueued()
					return
				}
			}
		}
		if stopping && inflight == nil && len(cur.batch) == 0 && len(e.reqs) == 0 {
			return
		}
		var reqs <-chan *request
		if len(cur.batch) < e.cfg.MaxBatch && !trim {
			reqs = e.reqs
		}
		var linger <-chan time.Time
		if inflight == nil && len(cur.batch) > 0 {
			linger = time.After(e.lingerLeft(cur))
		}
		var results <-chan error
		if inflight != nil {
			results = e.results
		}
		var stop <-chan struct{}
		if !stopping {
			stop = e.stop
		}
		select {
		case r := <-reqs:
			e.applyChunk(cur, e.collect(r, e.cfg.MaxBatch-len(cur.batch)))
		case <-linger:
		case err := <-results:
			done := inflight
			inflight = nil
			if err != nil {
				// cur was applied on top of done's state: start both again
				// from what the database holds.
				e.failed(done, cur, err)
				cur = e.newBuilt()
				trim = false
				if e.unready.Load() != nil {
					// The reload failed because the engine is closing:
					// the state is unusable, so refuse what is queued.
					e.refuseQueued()
					return
				}
				continue
			}
			e.answer(done.batch, done.replies)
			// Past the limit, stop taking requests until the batch being
			// built is written too; then the cache is dropped.
			trim = trim || e.cached() > e.cfg.CacheLimit
		case <-stop:
			stopping = true
		}
	}
}

// refuseQueued answers every queued request as retryable: the writer
// stops without a state it may apply them to.
func (e *Engine) refuseQueued() {
	for {
		select {
		case r := <-e.reqs:
			r.done <- reply{err: fault.E(fault.Unavailable, "", "the ledger is shutting down after a failed commit; retry")}
		default:
			return
		}
	}
}

// lingerLeft is how much longer the batch being built may wait for more
// requests; zero or less when it should go now.
func (e *Engine) lingerLeft(bt *built) time.Duration {
	if e.cfg.Linger <= 0 || len(bt.batch) >= e.cfg.MaxBatch {
		return 0
	}
	return e.cfg.Linger - time.Since(bt.started)
}

// cached counts the rows the writer holds in memory.
func (e *Engine) cached() int {
	return len(e.accounts) + len(e.cards) + len(e.holds) + len(e.idem) + len(e.checked) + len(e.tr.taps) + len(e.tr.riders)
}

// collect takes first (if any) and whatever else is queued, up to n.
func (e *Engine) collect(first *request, n int) []*request {
	var chunk []*request
	if first != nil {
		chunk = append(chunk, first)
	}
	for len(chunk) < n {
		select {
		case r := <-e.reqs:
			chunk = append(chunk, r)
			continue
		default:
		}
		break
	}
	return chunk
}

// pending is the batch being built.
type pending struct {
	transfers     []store.Transfer
	touched       map[string]*store.Account
	created       map[string]bool
	cards         map[string]bool
	newCards      map[string]bool
	holds         map[int64]bool
	idem          []store.IdemRecord
	audit         []store.AuditEntry
	sagas         []store.SagaState
	serialChanged bool
	tr            transitPending
}

type batchMark struct {
	transfers, idem, audit, sagas int
	lastTransfer, lastAccount     int64
}

func (p *pending) mark(h store.Head) batchMark {
	return batchMark{len(p.transfers), len(p.idem), len(p.audit), len(p.sagas), h.LastTransfer, h.LastAccount}
}

func (p *pending) restore(m batchMark) {
	p.transfers = p.transfers[:m.transfers]
	p.idem = p.idem[:m.idem]
	p.audit = p.audit[:m.audit]
	p.sagas = p.sagas[:m.sagas]
}

// built is a batch applied in memory and waiting for its commit.
type built struct {
	batch   []*request
	replies []reply
	live    []bool
	p       *pending
	seen    map[store.IdemKey]int
	started time.Time
	now     time.Time
	b       *store.Batch // nil when the batch writes nothing
}

func (e *Engine) newBuilt() *built {
	return &built{
		p: &pending{
			touched: map[string]*store.Account{}, created: map[string]bool{},
			cards: map[string]bool{}, newCards: map[string]bool{}, holds: map[int64]bool{},
			tr: transitPending{riders: map[string]bool{}, devices: map[string]bool{}},
		},
		seen: map[store.IdemKey]int{},
	}
}

// applyChunk applies newly arrived requests to the batch being built.
func (e *Engine) applyChunk(bt *built, chunk []*request) {
	if len(bt.batch) == 0 {
		bt.started = time.Now()
		// Both stores keep microseconds; the chain hash must see what they keep.
		bt.now = e.cfg.Now().UTC().Truncate(time.Microsecond)
	}
	base := len(bt.batch)
	live := make([]bool, len(chunk))
	bt.batch = append(bt.batch, chunk...)
	bt.replies = append(bt.replies, make([]reply, len(chunk))...)
	for i, r := range chunk {
		// A caller that gave up before its request was applied gets
		// nothing written.
		if err := r.ctx.Err(); err != nil {
			bt.replies[base+i] = reply{err: fault.Wrap(fault.Timeout, err)}
			continue
		}
		live[i] = true
	}
	defer func() { bt.live = append(bt.live, live...) }()
	if err := e.prefetch(context.Background(), chunk, live); err != nil {
		// A key the store cannot hold is one request's fault: load each
		// apart, so that only the requests whose loads fail are refused.
		// Any other failure (the store is away) refuses the whole chunk
		// at once rather than asking an absent store once per request.
		apart := errors.Is(err, store.ErrBadValue)
		for i := range chunk {
			if !live[i] {
				continue
			}
			if apart {
				err = e.prefetch(context.Background(), chunk[i:i+1], live[i:i+1])
			}
			if err != nil {
				bt.replies[base+i] = reply{err: loadError(err)}
				live[i] = false
			}
		}
	}
	for i, r := range chunk {
		if !live[i] {
			continue
		}
		j := base + i
		if k := r.opts.Idempotency; k != nil {
			if rec, ok := e.idem[*k]; ok {
				bt.replies[j] = replayOf(rec, r.opts.RequestHash)
				continue
			}
			if first, ok := bt.seen[*k]; ok {
				// The same key twice in one batch: the second gets the
				// first's answer, resolved after the commit.
				bt.replies[j] = reply{err: errSameBatch{first}}
				continue
			}
		}
		bt.replies[j] = e.apply(bt.p, r, bt.now)
		if k := r.opts.Idempotency; k != nil && bt.replies[j].err == nil {
			bt.seen[*k] = j
		}
	}
}

// handOff gives the batch to the committer, which is idle, and returns
// it as the batch in flight; a batch that writes nothing is answered at
// once (every batch before it is committed) and nil is returned.
func (e *Engine) handOff(bt *built) *built {
	head := e.head
	e.prepare(bt)
	if bt.b == nil {
		e.answer(bt.batch, bt.replies)
		return nil
	}
	if err := checkBatch(bt.b, head); err != nil {
		e.log.Error("ledger: a batch breaks the books' invariants; refused without writing", "err", err)
		e.failed(bt, e.newBuilt(), err)
		return nil
	}
	e.commits <- bt
	return bt
}

// failed handles a commit that failed: done is the batch that failed and
// cur the one applied on top of it. Neither is answered from memory. If
// the store refused a value of one op, both are applied again from what
// the database holds and committed in parts until that op is found;
// otherwise both are refused as retryable. Either way the writer reloads
// first and refuses writes until it has.
func (e *Engine) failed(done, cur *built, err error) {
	why := reloading
	e.unready.Store(&why)
	if !errors.Is(err, store.ErrBadValue) {
		e.log.Error("ledger: commit failed; batch refused", "size", len(done.batch), "err", err)
		e.failAll(done.batch, done.live, done.replies, err)
		e.refuse(cur, "an earlier batch failed to commit; retry")
		e.recover()
		return
	}
	e.log.Warn("ledger: the store refused a value; finding the request at fault", "size", len(done.batch), "err", err)
	if !e.recover() {
		e.refuse(done, "the ledger is shutting down after a failed commit; retry")
		e.refuse(cur, "the ledger is shutting down after a failed commit; retry")
		return
	}
	e.isolate(append(liveOf(done), liveOf(cur)...))
	e.answerDead(done)
	e.answerDead(cur)
}

// prepare builds the store batch of bt, if it writes anything, and moves
// the head on: the next batch chains onto this one. If the commit fails,
// the writer reloads the head from the database. The batch's idempotency
// records join the cache now, but no answer read from them is sent before
// this batch is durable: a later batch is answered after this one, and
// refused if this one failed.
func (e *Engine) prepare(bt *built) {
	p := bt.p
	if len(p.transfers) > 0 || len(p.touched) > 0 || len(p.cards) > 0 || len(p.holds) > 0 ||
		len(p.idem) > 0 || len(p.audit) > 0 || len(p.sagas) > 0 || p.serialChanged || !p.tr.empty() {
		bt.b = e.build(p, bt.now)
		e.head.LastBatch = bt.b.Record.Seq
		e.head.LastHash = bt.b.Record.Hash
		for _, rec := range p.idem {
			e.idem[rec.IdemKey] = rec
		}
	}
}

// reloading is why the writer refuses writes after a failed commit.
const reloading = "a commit failed; the ledger is reloading from the store"

// recover reloads the writer's state from the store after a failed
// commit, trying again with backoff for as long as it takes. Meanwhile
// every request is refused at once as retryable and Ready reports why. It
// reports false if the engine was closed before a reload succeeded: the
// state is then unusable, and so the writer refuses everything left.
func (e *Engine) recover() bool {
	why := reloading
	e.unready.Store(&why)
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := e.reset(context.Background())
		if err == nil {
			e.unready.Store(nil)
			if attempt > 1 {
				e.log.Info("ledger: reloaded from the store; serving again", "attempts", attempt)
			}
			return true
		}
		if attempt == 1 || attempt%50 == 0 {
			e.log.Error("ledger: reload after failed commit; refusing writes until it succeeds", "attempt", attempt, "err", err)
		}
		t := time.NewTimer(wait)
	waiting:
		for {
			select {
			case r := <-e.reqs:
				r.done <- reply{err: fault.E(fault.Unavailable, "", why+"; retry")}
			case <-t.C:
				break waiting
			case <-e.stop:
				t.Stop()
				return false
			}
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// refuse answers every live request of bt as retryable: nothing of it was
// written.
func (e *Engine) refuse(bt *built, why string) {
	for i := range bt.batch {
		if bt.live[i] {
			bt.replies[i] = reply{err: fault.E(fault.Unavailable, "", why)}
		}
	}
	e.answer(bt.batch, bt.replies)
}

// liveOf lists the requests of bt that were applied (their callers still
// wait), in order.
func liveOf(bt *built) []*request {
	var out []*request
	for i, r := range bt.batch {
		if bt.live[i] {
			out = append(out, r)
		}
	}
	return out
}

// answerDead answers the requests of bt that were not applied (their
// callers gave up before): their replies were set when they arrived.
func (e *Engine) answerDead(bt *built) {
	for i, r := range bt.batch {
		if !bt.live[i] {
			r.done <- bt.replies[i]
		}
	}
}

// isolate applies reqs from the state the database holds and commits
// them at once, on the writer's goroutine while the committer waits for
// its next batch. If the store refuses a value, it reloads and commits
// each half apart, so the one op at fault is refused alone (not
// retryable: the same request would fail again) and the others are
// written.
func (e *Engine) isolate(reqs []*request) {
	if len(reqs) == 0 {
		return
	}
	if e.unready.Load() != nil {
		// A reload failed as the engine closed: nothing may be applied.
		for _, r := range reqs {
			r.done <- reply{err: fault.E(fault.Unavailable, "", "the ledger is shutting down after a failed commit; retry")}
		}
		return
	}
	bt := e.newBuilt()
	e.applyChunk(bt, reqs)
	e.prepare(bt)
	var err error
	if bt.b != nil {
		err = e.st.CommitBatch(context.Background(), bt.b)
		if e.cfg.Observe != nil {
			e.cfg.Observe(len(bt.batch), 0, err)
		}
	}
	if err == nil {
		e.answer(bt.batch, bt.replies)
		return
	}
	if !e.recover() {
		e.failAll(bt.batch, bt.live, bt.replies, err)
		return
	}
	switch {
	case !errors.Is(err, store.ErrBadValue):
		e.failAll(bt.batch, bt.live, bt.replies, err)
	case len(reqs) == 1:
		e.log.Warn("ledger: the store refused a value of one request; refused alone", "err", err)
		e.answer(bt.batch, []reply{{err: fault.E(fault.InvalidRequest, "",
			"the store cannot hold a value of this request: "+err.Error())}})
	default:
		mid := len(reqs) / 2
		e.isolate(reqs[:mid])
		e.isolate(reqs[mid:])
	}
}

// commit writes the batches the writer hands it, one at a time, and
// tells the writer how each went.
func (e *Engine) commit() {
	defer close(e.committerDone)
	ctx := context.Background()
	for bt := range e.commits {
		if e.cfg.TransferEvents {
			// Encoded here rather than by the writer, which meanwhile
			// applies the next batch: only the store reads them.
			bt.b.Outbox = outbox(bt.b.Transfers)
		}
		start := time.Now()
		err := e.st.CommitBatch(ctx, bt.b)
		if e.cfg.Observe != nil {
			e.cfg.Observe(len(bt.batch), time.Since(start), err)
		}
		e.results <- err
	}
}

type errSameBatch struct{ first int }

func (errSameBatch) Error() string { return "same idempotency key earlier in the batch" }

func (e *Engine) answer(batch []*request, replies []reply) {
	for i, r := range batch {
		if sb, ok := replies[i].err.(errSameBatch); ok {
			first := replies[sb.first]
			if first.err != nil {
				replies[i] = first
			} else {
				rec := store.IdemRecord{RequestHash: batch[sb.first].opts.RequestHash,
					Status: first.out.Status, Response: first.out.Body}
				replies[i] = replayOf(rec, r.opts.RequestHash)
			}
		}
		r.done <- replies[i]
	}
}

func (e *Engine) failAll(batch []*request, live []bool, replies []reply, err error) {
	for i := range batch {
		if live[i] {
			replies[i] = reply{err: fault.Wrap(fault.Unavailable, err)}
		}
	}
	e.answer(batch, replies)
}

func replayOf(rec store.IdemRecord, hash string) reply {
	if rec.RequestHash != hash {
		return reply{err: fault.E(fault.IdempotencyConflict, "Idempotency-Key",
			"this key was used before with a different request")}
	}
	return reply{out: Outcome{Status: rec.Status, Body: rec.Response, Replayed: true}}
}

func (e *Engine) apply(p *pending, r *request, now time.Time) (rep reply) {
	tx := &Tx{
		e: e, b: p, now: now,
		mark: p.mark(e.head),
	}
	defer func() {
		if v := recover(); v != nil {
			tx.rollback()
			e.log.Error("ledger: op panicked; rolled back", "panic", fmt.Sprint(v))
			rep = reply{err: fault.E(fault.Internal, "", fmt.Sprintf("internal error: %v", v))}
		}
	}()
	res, err := r.op.Apply(tx)
	var out Outcome
	if err == nil {
		out.Result = res
		if r.opts.Encode != nil {
			out.Status, out.Body, err = r.opts.Encode(res)
		}
	}
	if err != nil {
		tx.rollback()
		e.auditOutcome(p, r, now, "error:"+fault.CodeOf(err))
		return reply{err: err}
	}
	if k := r.opts.Idempotency; k != nil {
		p.idem = append(p.idem, store.IdemRecord{IdemKey: *k, RequestHash: r.opts.RequestHash,
			Status: out.Status, Response: out.Body, At: now})
	}
	outcome := "ok"
	if o, ok := res.(Outcomer); ok {
		outcome = o.AuditOutcome()
	}
	e.auditOutcome(p, r, now, outcome)
	return reply{out: out}
}

func (e *Engine) auditOutcome(p *pending, r *request, now time.Time, outcome string) {
	if r.opts.Audit == nil {
		return
	}
	a := *r.opts.Audit
	a.At = now
	a.Outcome = outcome
	p.audit = append(p.audit, a)
}

// loadError is the answer to a request whose rows could not be loaded: a
// key the store cannot hold is the request's own fault, anything else is
// the store's and may be retried.
func loadError(err error) error {
	if errors.Is(err, store.ErrBadValue) {
		return fault.E(fault.InvalidRequest, "", "the store cannot hold a value of this request: "+err.Error())
	}
	return fault.Wrap(fault.Unavailable, err)
}

// checkKeys refuses keys no store row can have (a NUL byte, invalid
// UTF-8) before they reach a query: PostgreSQL would fail the whole load.
func checkKeys(k *Keys, idem []store.IdemKey) error {
	bad := func(what, v string) error {
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: %s %q holds a NUL byte", store.ErrBadValue, what, v)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: %s %q is not valid UTF-8", store.ErrBadValue, what, v)
		}
		return nil
	}
	for _, set := range []struct {
		what string
		vs   []string
	}{{"account", k.Accounts}, {"card", k.Cards}, {"card", k.Riders}, {"device", k.Devices}} {
		for _, v := range set.vs {
			if err := bad(set.what, v); err != nil {
				return err
			}
		}
	}
	for _, t := range k.Taps {
		if err := bad("device", t.Device); err != nil {
			return err
		}
	}
	for _, ik := range idem {
		if err := bad("idempotency key", ik.Key); err != nil {
			return err
		}
		if err := bad("operator", ik.Operator); err != nil {
			return err
		}
	}
	return nil
}

// prefetch loads every row the batch's ops name that is not cached yet.
func (e *Engine) prefetch(ctx context.Context, batch []*request, live []bool) error {
	var k Keys
	var idem []store.IdemKey
	for i, r := range batch {
		if !live[i] {
			continue
		}
		r.op.Prefetch(&k)
		if r.opts.Idempotency != nil {
			if _, ok := e.idem[*r.opts.Idempotency]; !ok {
				idem = append(idem, *r.opts.Idempotency)
			}
		}
	}
	if err := checkKeys(&k, idem); err != nil {
		return err
	}
	var holds []int64
	for _, id := range k.Holds {
		if _, ok := e.holds[id]; !ok {
			holds = append(holds, id)
		}
	}
	if len(holds) > 0 {
		hs, err := e.st.LoadHolds(ctx, holds)
		if err != nil {
			return err
		}
		for _, h := range hs {
			t, err := e.st.GetTransfer(ctx, h.ID)
			if err != nil {
				return fmt.Errorf("ledger: load hold transfer %d: %w", h.ID, err)
			}
			e.holds[h.ID] = &heldTransfer{Hold: h, Transfer: t}
			// The hold's purse accounts come with its card; the op names
			// the merchant's account.
			k.Cards = append(k.Cards, h.Card)
		}
	}
	var cards []string
	for _, n := range dedupe(k.Cards) {
		if _, ok := e.cards[n]; !ok && n != "" {
			cards = append(cards, n)
		}
	}
	if len(cards) > 0 {
		cs, err := e.st.LoadCards(ctx, cards)
		if err != nil {
			return err
		}
		for i := range cs {
			c := cs[i]
			e.cards[c.Number] = &c
		}
	}
	// A card's accounts come with it: ops address purses by code.
	for _, n := range cards {
		if _, ok := e.cards[n]; !ok {
			continue
		}
		as, err := e.st.CardAccounts(ctx, n)
		if err != nil {
			return err
		}
		e.cacheAccounts(as)
	}
	var codes []string
	for _, c := range dedupe(k.Accounts) {
		if _, ok := e.accounts[c]; !ok {
			codes = append(codes, c)
		}
	}
	if len(codes) > 0 {
		as, err := e.st.LoadAccounts(ctx, codes)
		if err != nil {
			return err
		}
		e.cacheAccounts(as)
	}
	for _, id := range k.Reversals {
		if e.checked[id] {
			continue
		}
		rid, err := e.st.ReversalOf(ctx, id)
		if err != nil {
			return err
		}
		e.checked[id] = true
		if rid != 0 {
			e.reversed[id] = true
		}
	}
	if err := e.prefetchTransit(ctx, &k); err != nil {
		return err
	}
	if len(idem) > 0 {
		recs, err := e.st.LoadIdempotency(ctx, idem)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			e.idem[rec.IdemKey] = rec
		}
	}
	return nil
}

func (e *Engine) cacheAccounts(as []store.Account) {
	for i := range as {
		if _, ok := e.accounts[as[i].Code]; ok {
			continue
		}
		a := as[i]
		e.accounts[a.Code] = &a
		e.byID[a.ID] = &a
	}
}

func dedupe(s []string) []string {
	if len(s) < 2 {
		return s
	}
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (e *Engine) build(p *pending, now time.Time) *store.Batch {
	b := &store.Batch{Transfers: p.transfers, Idempotency: p.idem, Audit: p.audit}
	for code, acc := range p.touched {
		if p.created[code] {
			b.NewAccounts = append(b.NewAccounts, *acc)
		} else {
			b.Accounts = append(b.Accounts, *acc)
		}
	}
	for n := range p.cards {
		c := e.cards[n]
		if c == nil {
			continue
		}
		if p.newCards[n] {
			b.NewCards = append(b.NewCards, *c)
		} else {
			b.Cards = append(b.Cards, *c)
		}
	}
	for id := range p.holds {
		if h := e.holds[id]; h != nil {
			b.Holds = append(b.Holds, h.Hold)
		}
	}
	if p.serialChanged {
		b.CardSerial = e.head.CardSerial
	}
	b.SagaStates = p.sagas
	seq := e.head.LastBatch + 1
	for i := range b.Transfers {
		b.Transfers[i].Batch = seq
	}
	b.Record = store.BatchRecord{Seq: seq, PrevHash: e.head.LastHash, Transfers: len(b.Transfers), At: now}
	b.Record.Hash = ChainHash(e.head.LastHash, seq, b.Transfers)
	e.buildTransit(p, b, now)
	return b
}

// ChainHash is the hash of one committed batch: it covers the previous
// batch's hash and every transfer and entry of this one, so that changing,
// adding or removing any of them is evident.
func ChainHash(prev []byte, seq int64, ts []store.Transfer) []byte {
	h := sha256.New()
	buf := make([]byte, 0, 1<<15+1024)
	num := func(v int64) { buf = binary.BigEndian.AppendUint64(buf, uint64(v)) }
	str := func(s string) { num(int64(len(s))); buf = append(buf, s...) }
	buf = append(buf, prev...)
	num(seq)
	for _, t := range ts {
		num(t.ID)
		str(t.Kind)
		str(t.Currency)
		str(t.Card)
		if t.Pending {
			num(1)
		} else {
			num(0)
		}
		num(t.Ref)
		num(t.Amount)
		str(t.Channel)
		str(t.Merchant)
		str(t.Terminal)
		num(t.At.UnixNano())
		num(int64(len(t.Entries)))
		for _, en := range t.Entries {
			num(en.Account)
			num(en.Amount)
		}
		if len(buf) > 1<<15 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return h.Sum(nil)
}

// IsRetryable reports whether a Submit error means the request may be sent
// again as it was (the batch could not be written, or the writer is down),
// as the error registry says of its code.
func IsRetryable(err error) bool {
	return fault.Retryable(fault.CodeOf(err)) || errors.Is(err, ErrClosed)
}
