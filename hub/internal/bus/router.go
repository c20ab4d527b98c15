package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Backends, for Config.Backend.
const (
	// BackendGoChannel keeps messages in process memory: the default.
	BackendGoChannel = "gochannel"
	// BackendPostgres keeps messages in PostgreSQL tables (watermill-sql).
	BackendPostgres = "postgres"
	// BackendNATS keeps messages in a NATS JetStream stream.
	BackendNATS = "nats"
)

// Defaults of Config.
const (
	DefaultHandlerTimeout       = 5 * time.Second
	DefaultMaxRetries           = 3
	DefaultRetryInitialInterval = 50 * time.Millisecond
	DefaultRetryMaxInterval     = 5 * time.Second
	DefaultCloseTimeout         = 30 * time.Second
	DefaultPollInterval         = 250 * time.Millisecond
	DefaultNATSStream           = "CITYCARD"
	DefaultNATSMaxAge           = 7 * 24 * time.Hour
)

// deadLettersHandler names the router's own handler of TopicDeadLetters.
const deadLettersHandler = "deadletters"

// ackSettle is how long Close gives a durable backend to record the last
// acknowledgements before its subscribers close.
const ackSettle = 50 * time.Millisecond

// Config configures a Router. The zero value is an in-process router with
// the defaults below.
type Config struct {
	// Backend is BackendGoChannel (default), BackendPostgres or BackendNATS.
	Backend string

	// PostgresPool is the database of BackendPostgres. Every handler holds
	// one connection while it handles a message, so size the pool for the
	// handlers plus the hub's own work.
	PostgresPool *pgxpool.Pool
	// PollInterval is how often an idle PostgreSQL subscriber looks for new
	// rows: the delivery latency of BackendPostgres. Default 250ms.
	PollInterval time.Duration

	// NATSURL is the server of BackendNATS, e.g. nats://127.0.0.1:4222.
	NATSURL string
	// NATSStream names the JetStream stream, created if missing; topics are
	// carried as subjects "<NATSStream>.<topic>". Default "CITYCARD".
	NATSStream string
	// NATSMaxAge is how long the stream keeps messages. Default 7 days.
	NATSMaxAge time.Duration

	// Logger receives the router's log lines; nil means slog.Default(). It
	// is wrapped with NewLogHandler, so lines carry the correlation ID.
	Logger *slog.Logger

	// HandlerTimeout bounds each attempt of a handler. Default 5s.
	HandlerTimeout time.Duration
	// MaxRetries is how many times a retryable failure is retried after the
	// first attempt. 0 means the default, 3; a negative value, none.
	MaxRetries int
	// RetryInitialInterval is the wait before the first retry, doubled
	// before each next one. Default 50ms.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the wait between retries. Default 5s.
	RetryMaxInterval time.Duration

	// Idempotency remembers handled idempotency keys. Default: an in-memory
	// LRU of DedupCapacity keys for DedupWindow.
	Idempotency IdempotencyStore
	// DedupWindow is how long the default store remembers a key. Default 24h.
	DedupWindow time.Duration
	// DedupCapacity is how many keys the default store holds. Default 100,000.
	DedupCapacity int

	// DeadLetters keeps the dead letters. Default: in memory.
	DeadLetters DeadLetterStore

	// CloseTimeout bounds how long Close waits for handlers to return.
	// Default 30s.
	CloseTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Backend == "" {
		c.Backend = BackendGoChannel
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.NATSStream == "" {
		c.NATSStream = DefaultNATSStream
	}
	if c.NATSMaxAge <= 0 {
		c.NATSMaxAge = DefaultNATSMaxAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.RetryInitialInterval <= 0 {
		c.RetryInitialInterval = DefaultRetryInitialInterval
	}
	if c.RetryMaxInterval <= 0 {
		c.RetryMaxInterval = DefaultRetryMaxInterval
	}
	c.RetryMaxInterval = max(c.RetryMaxInterval, c.RetryInitialInterval)
	if c.Idempotency == nil {
		c.Idempotency = NewMemoryIdempotencyStore(c.DedupWindow, c.DedupCapacity)
	}
	if c.DeadLetters == nil {
		c.DeadLetters = NewMemoryDeadLetters()
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
}

// deliveryBudget is the longest a handler may keep one message: every
// attempt timing out, every backoff waited, and slack for the dead letter.
// The durable backends redeliver a message held longer, so their ack
// deadlines are set from it.
func (c *Config) deliveryBudget() time.Duration {
	d := time.Duration(c.MaxRetries+1) * c.HandlerTimeout
	wait := c.RetryInitialInterval
	for range c.MaxRetries {
		d += wait
		wait = min(wait*2, c.RetryMaxInterval)
	}
	return d + 10*time.Second
}

// backend is what differs between GoChannel, PostgreSQL and NATS.
type backend interface {
	// inProcess reports whether messages live only in this process, so a
	// message nobody is subscribed to yet would be lost.
	inProcess() bool
	publish(topic string, msgs ...*message.Message) error
	// subscriber returns the subscriber of one handler; durable backends
	// make one per handler so each handler gets every message once.
	subscriber(handler, topic string) (message.Subscriber, error)
	// publishDeadLetter puts dead, made from orig, on TopicDeadLetters.
	publishDeadLetter(orig, dead *message.Message) error
	close() error
}

// Router carries messages between the plugin host (which publishes what
// plugins send) and the hub services (whose handlers it runs), through the
// middleware described at stack: correlation IDs, a poison queue,
// de-duplication, retries, timeouts and panic recovery.
//
// Register handlers with Handle, then Start; Close stops it.
type Router struct {
	cfg  Config
	log  *slog.Logger
	wlog watermill.LoggerAdapter
	be   backend
	keys IdempotencyStore
	dead DeadLetterStore

	mu       sync.Mutex
	state    routerState
	handlers []handlerSpec
	names    map[string]bool
	topics   map[string]int // handlers per topic
	wm       *message.Router
	runErr   chan error
	closing  chan struct{}
	inflight int           // messages handed to handlers and not yet acknowledged
	idle     chan struct{} // closed when inflight drops to 0, while Close waits

	// pubMu keeps the backend from closing under a Publish: watermill's
	// publishers are not safe to close while publishing.
	pubMu sync.RWMutex

	// waiting holds, for each in-process delivery, the handlers still to
	// finish with it (see publishWait).
	waiting sync.Map // delivery id → *delivery

	// halt cancels the handlers still running when Close stops waiting.
	halt       context.Context
	haltCancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

type routerState int

const (
	stateNew routerState = iota
	stateStarting
	stateRunning
	stateFailed // Start failed: the watermill router never ran
	stateClosed
)

type handlerSpec struct {
	name, topic string
	fn          HandlerFunc
}

// New returns a router over the configured backend, connected and ready for
// Handle. ctx bounds connecting only.
func New(ctx context.Context, cfg Config) (*Router, error) {
	cfg.setDefaults()
	log := slog.New(NewLogHandler(cfg.Logger.Handler()))
	// Watermill's info lines (handler started, subscriber closed) are
	// routine for us; its errors stay errors.
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})

	var be backend
	var err error
	switch cfg.Backend {
	case BackendGoChannel:
		be = newGoChannelBackend(wlog)
	case BackendPostgres:
		be, err = newPostgresBackend(ctx, &cfg, wlog)
	case BackendNATS:
		be, err = newNATSBackend(ctx, &cfg, wlog)
	default:
		err = fmt.Errorf("unknown backend %q (want %q, %q or %q)", cfg.Backend, BackendGoChannel, BackendPostgres, BackendNATS)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	halt, haltCancel := context.WithCancel(context.Background())
	return &Router{
		halt:       halt,
		haltCancel: haltCancel,
		cfg:        cfg,
		log:        log,
		wlog:       wlog,
		be:         be,
		keys:       cfg.Idempotency,
		dead:       cfg.DeadLetters,
		names:      map[string]bool{deadLettersHandler: true},
		topics:     map[string]int{TopicDeadLetters: 1},
		runErr:     make(chan error, 1),
		closing:    make(chan struct{}),
	}, nil
}

// Backend returns the backend in use.
func (r *Router) Backend() string { return r.cfg.Backend }

// InProcess reports whether messages live only in this process
// (GoChannel): then Publish returns only after the handlers are done.
func (r *Router) InProcess() bool { return r.be.inProcess() }

// DeadLetters returns the store the poison queue fills, for listing.
func (r *Router) DeadLetters() DeadLetterStore { return r.dead }

// Handle registers h as the handler named name of topic. Names are unique
// per router and stable across restarts and hub nodes: the durable backends
// track each handler's progress under its name, and nodes running a handler
// of the same name share its messages. Handle must be called before Start.
func (r *Router) Handle(name, topic string, h HandlerFunc) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("bus: handler name: %w", err)
	}
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("bus: handler %s: %w", name, err)
	}
	if h == nil {
		return fmt.Errorf("bus: handler %s: nil HandlerFunc", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case stateNew:
	case stateClosed:
		return ErrClosed
	default:
		return ErrStarted
	}
	if r.names[name] {
		return fmt.Errorf("bus: handler name %q already taken", name)
	}
	r.names[name] = true
	r.topics[topic]++
	r.handlers = append(r.handlers, handlerSpec{name, topic, h})
	return nil
}

// Start subscribes every handler and returns once they all receive
// messages. ctx bounds the start only: the router runs until Close.
func (r *Router) Start(ctx context.Context) error {
	r.mu.Lock()
	switch r.state {
	case stateNew:
	case stateClosed:
		r.mu.Unlock()
		return ErrClosed
	default:
		r.mu.Unlock()
		return ErrStarted
	}
	r.state = stateStarting
	handlers := r.handlers
	r.mu.Unlock()

	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, r.wlog)
	if err == nil {
		err = r.addHandlers(wm, handlers)
	}
	if err != nil {
		r.setState(stateFailed)
		return fmt.Errorf("bus: start: %w", errors.Join(err, r.Close()))
	}
	r.mu.Lock()
	if r.state == stateClosed {
		// Closed while subscribing; Close has closed the subscribers.
		r.mu.Unlock()
		return ErrClosed
	}
	r.wm = wm
	r.mu.Unlock()

	go func() { r.runErr <- wm.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-wm.Running():
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.state == stateClosed {
			return ErrClosed
		}
		r.state = stateRunning
		return nil
	case err := <-r.runErr:
		// Run gave up before every handler subscribed; the handlers it did
		// start stop with its context, and closing the watermill router
		// would wait for the ones it never started.
		if err == nil {
			err = ErrClosed // closed while starting
		}
		r.setState(stateFailed)
		return fmt.Errorf("bus: start: %w", errors.Join(err, r.Close()))
	case <-ctx.Done():
		return fmt.Errorf("bus: start: %w", errors.Join(ctx.Err(), r.Close()))
	}
}

func (r *Router) addHandlers(wm *message.Router, handlers []handlerSpec) error {
	// The dead-letter handler first: PostgreSQL creates its table on
	// subscribing, and the others may need it at their first message.
	sub, err := r.be.subscriber(deadLettersHandler, TopicDeadLetters)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", TopicDeadLetters, err)
	}
	wm.AddConsumerHandler(deadLettersHandler, TopicDeadLetters, drainSubscriber{sub, r}, r.storeDeadLetters())
	for _, h := range handlers {
		sub, err := r.be.subscriber(h.name, h.topic)
		if err != nil {
			return fmt.Errorf("subscribe handler %s to %s: %w", h.name, h.topic, err)
		}
		wm.AddConsumerHandler(h.name, h.topic, drainSubscriber{sub, r}, r.stack(h.name, h.topic, h.fn))
	}
	return nil
}

// drainSubscriber stands between a backend's subscriber and watermill's
// router so that Close can drain. Watermill cancels its subscribers'
// context the moment it closes, which cuts a handler short and loses the
// acknowledgement of a message just handled (PostgreSQL commits it after the
// handler returns). So the backend gets a context that is never cancelled
// and stops only when its subscriber is closed, and every delivery counts as
// in flight until it is acknowledged: Close stops admitting deliveries, waits
// for those in flight, and only then closes the subscribers.
type drainSubscriber struct {
	message.Subscriber
	r *Router
}

func (d drainSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := d.Subscriber.Subscribe(context.WithoutCancel(ctx), topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for m := range in {
			if !d.r.admit(topic) {
				// Closing: left unacknowledged, the message is delivered again
				// after a restart (with GoChannel its publisher hears ErrClosed).
				continue
			}
			out <- m
			// GoChannel hands over the next message without waiting for
			// this one's acknowledgement, and watermill runs each in a
			// goroutine of its own, so an in-process handler works on many
			// messages at once (the ledger commits them in one group); the
			// durable backends wait for the acknowledgement themselves.
			go func() {
				select {
				case <-m.Acked():
				case <-m.Nacked():
				}
				d.r.done()
			}()
		}
	}()
	return out, nil
}

// admit counts a delivery as in flight, unless the router is closing. Dead
// letters are still admitted then: the handler that failed is in flight and
// waits for its dead letter to be stored.
func (r *Router) admit(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == stateClosed && topic != TopicDeadLetters {
		return false
	}
	r.inflight++
	return true
}

func (r *Router) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	if r.inflight == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

// waitIdle waits until no message is in flight, or d passes.
func (r *Router) waitIdle(d time.Duration) bool {
	r.mu.Lock()
	if r.inflight == 0 {
		r.mu.Unlock()
		return true
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

func (r *Router) setState(s routerState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateClosed {
		r.state = s
	}
}

// Close stops the router. It stops taking new deliveries (those left are
// delivered again after a restart; with GoChannel their publishers hear
// ErrClosed), lets the messages in flight finish for up to CloseTimeout,
// then cancels the handlers still running, whose messages are left for
// redelivery rather than dead-lettered, and closes the backend. Close is
// safe to call more than once.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		prev, wm := r.state, r.wm
		r.state = stateClosed
		close(r.closing)
		r.mu.Unlock()

		var errs []error
		if wm != nil && (prev == stateRunning || prev == stateStarting) {
			if !r.waitIdle(r.cfg.CloseTimeout) {
				r.log.Warn("bus: handlers still running at close; cancelling them", "timeout", r.cfg.CloseTimeout)
				r.haltCancel()
				if !r.waitIdle(r.cfg.CloseTimeout) {
					errs = append(errs, errors.New("handlers did not return after cancellation"))
				}
			}
			r.haltCancel()
			if !r.be.inProcess() {
				// The durable subscribers wait for an acknowledgement and for
				// their own closing in one select: closing them the instant the
				// last message was acknowledged could drop its acknowledgement
				// at random, and the message would be delivered again.
				time.Sleep(ackSettle)
			}
			errs = append(errs, wm.Close(), <-r.runErr)
		}
		r.haltCancel()
		r.pubMu.Lock()
		errs = append(errs, r.be.close())
		r.pubMu.Unlock()
		r.closeErr = errors.Join(errs...)
		if r.closeErr != nil {
			r.closeErr = fmt.Errorf("bus: close: %w", r.closeErr)
		}
	})
	return r.closeErr
}

func (r *Router) closed() bool {
	select {
	case <-r.closing:
		return true
	default:
		return false
	}
}

// Publish sends msgs to topic. Each message without a correlation ID gets
// ctx's (see WithCorrelationID), or a new one. Set MetaIdempotencyKey on
// messages whose effect must happen once.
//
// With GoChannel, Publish returns once every handler of topic is done with
// each message (handled, acknowledged as a duplicate, or dead-lettered); it
// refuses a topic without a handler and any topic before Start, where the
// message would be lost; and a handler that publishes to its own topic
// deadlocks. With PostgreSQL and NATS it returns once the message is stored.
func (r *Router) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	r.mu.Lock()
	state, handled := r.state, r.topics[topic]
	r.mu.Unlock()
	if state == stateClosed {
		return ErrClosed
	}
	if r.be.inProcess() {
		if state != stateRunning {
			return ErrNotStarted
		}
		if handled == 0 {
			return fmt.Errorf("%w %s", ErrNoHandler, topic)
		}
	}
	stamp(ctx, msgs)
	if r.be.inProcess() {
		return r.publishWait(ctx, topic, handled, msgs)
	}
	r.pubMu.RLock()
	err := r.be.publish(topic, msgs...)
	r.pubMu.RUnlock()
	if err != nil {
		if r.closed() {
			return ErrClosed
		}
		return fmt.Errorf("bus: publish to %s: %w", topic, err)
	}
	return nil
}

// metaDelivery names one in-process delivery, so that its handlers can say
// they are done with it (a message's UUID may be published more than once).
const metaDelivery = "bus_delivery"

// delivery is one in-process message on its way through its handlers.
type delivery struct {
	left atomic.Int32 // handlers still to finish
	done chan struct{}
}

// publishWait publishes in process and returns once each of the topic's
// handlers is done with each message: handled, acknowledged as a duplicate,
// or dead-lettered. GoChannel itself would wait too, but holding a lock per
// topic, which lets one message through at a time; this way many messages
// of a topic are handled at once (and the ledger commits them together).
// A caller whose ctx ends stops waiting; the handlers carry on.
func (r *Router) publishWait(ctx context.Context, topic string, handlers int, msgs []*message.Message) error {
	ds := make([]*delivery, len(msgs))
	for i, m := range msgs {
		d := &delivery{done: make(chan struct{})}
		d.left.Store(int32(handlers))
		id := watermill.NewULID()
		m.Metadata.Set(metaDelivery, id)
		r.waiting.Store(id, d)
		defer r.waiting.Delete(id)
		ds[i] = d
	}
	r.pubMu.RLock()
	err := r.be.publish(topic, msgs...)
	r.pubMu.RUnlock()
	if err != nil {
		if r.closed() {
			return ErrClosed
		}
		return fmt.Errorf("bus: publish to %s: %w", topic, err)
	}
	for _, d := range ds {
		select {
		case <-d.done:
		case <-r.closing:
			// Closing lets a publish go without saying whether its handlers
			// finished.
			return ErrClosed
		case <-ctx.Done():
			// The caller stops waiting; the handlers carry on.
			return ctx.Err()
		}
	}
	return nil
}

// delivered records that one handler is done with msg.
func (r *Router) delivered(msg *message.Message) {
	id := msg.Metadata.Get(metaDelivery)
	if id == "" {
		return
	}
	if v, ok := r.waiting.Load(id); ok {
		d := v.(*delivery)
		if d.left.Add(-1) == 0 {
			close(d.done)
		}
	}
}

// publishDeadLetter puts dead on TopicDeadLetters; in process it returns
// once the letter is stored, so a publisher that hears its message is done
// can find the letter.
func (r *Router) publishDeadLetter(orig, dead *message.Message) error {
	if r.be.inProcess() {
		return r.publishWait(context.Background(), TopicDeadLetters, 1, []*message.Message{dead})
	}
	return r.be.publishDeadLetter(orig, dead)
}

// stamp gives each message a correlation ID and ctx.
func stamp(ctx context.Context, msgs []*message.Message) {
	id := CorrelationID(ctx)
	for _, m := range msgs {
		if m.Metadata == nil {
			m.Metadata = message.Metadata{}
		}
		if m.Metadata.Get(MetaCorrelationID) == "" {
			if id == "" {
				id = newCorrelationID()
			}
			m.Metadata.Set(MetaCorrelationID, id)
		}
		m.SetContext(ctx)
	}
}

// Replay publishes dead letter id again to its topic, for the handler that
// failed on it only (the topic's other handlers acknowledge it unrun), and
// marks the letter replayed. The replay is a new message (new UUID, metadata
// MetaReplayOf = id) that keeps the original correlation ID and idempotency
// key. Keeping the key is safe and still runs the handler: the bus
// remembers a key only once its handler succeeded, and this one failed; if a
// resent copy of the message has succeeded since, the replay is rightly
// acknowledged as a duplicate, and services downstream (the ledger) see the
// same key they would have seen the first time.
//
// A letter is replayed once (ErrAlreadyReplayed after); a replay that fails
// again becomes a new dead letter. With GoChannel, Replay returns after the
// handler is done with the replay.
func (r *Router) Replay(ctx context.Context, id int64) error {
	l, err := r.dead.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("bus: replay dead letter %d: %w", id, err)
	}
	if l.ReplayedAt != nil {
		return fmt.Errorf("bus: replay dead letter %d: %w at %s", id, ErrAlreadyReplayed, l.ReplayedAt.Format(time.RFC3339))
	}
	msg := message.NewMessage(watermill.NewUUID(), l.Payload)
	msg.Metadata = message.Metadata(maps.Clone(l.Metadata))
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	msg.Metadata.Set(MetaReplayOf, strconv.FormatInt(id, 10))
	msg.Metadata.Set(metaReplayHandler, l.Handler)
	if cid := msg.Metadata.Get(MetaCorrelationID); cid != "" {
		ctx = WithCorrelationID(ctx, cid)
	}
	if err := r.Publish(ctx, l.Topic, msg); err != nil {
		return fmt.Errorf("bus: replay dead letter %d: %w", id, err)
	}
	if err := r.dead.MarkReplayed(ctx, id, time.Now().UTC()); err != nil {
		return fmt.Errorf("bus: dead letter %d replayed, but not marked so: %w", id, err)
	}
	r.log.InfoContext(ctx, "bus: dead letter replayed", "dead_letter", id, "topic", l.Topic,
		"handler", l.Handler, "message_uuid", msg.UUID)
	return nil
}
