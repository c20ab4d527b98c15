package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// natsMaxAckPending bounds the messages JetStream hands one handler before
// it acknowledges any: a message waiting in a client's buffer still runs
// down its ack wait.
const natsMaxAckPending = 256

// natsBackend stores messages in one JetStream stream, topic T as subject
// "<stream>.T". Each handler has a durable push consumer of its own, named
// after it, delivered to a queue group of the same name: every handler gets
// every message of its topic, and hub nodes running the same handler share
// them, one node per message. Delivery is at least once; a node that dies
// holding a message has it delivered again after the ack wait. Publish
// returns after JetStream stored the message, and JetStream drops a message
// whose UUID it stored within the last two minutes, so a publish retried
// after a lost answer is stored once.
type natsBackend struct {
	cfg     *Config
	log     watermill.LoggerAdapter
	nc      *nats.Conn // stream and consumer management
	js      nats.JetStreamContext
	pub     *wnats.Publisher
	stream  string
	closers sync.WaitGroup // one per connection, done when it is closed

	mu   sync.Mutex
	subs []*wnats.Subscriber
}

func newNATSBackend(ctx context.Context, cfg *Config, log watermill.LoggerAdapter) (*natsBackend, error) {
	if cfg.NATSURL == "" {
		return nil, errors.New("nats backend: Config.NATSURL is empty")
	}
	if err := ValidateName(strings.ToLower(cfg.NATSStream)); err != nil {
		return nil, fmt.Errorf("nats backend: stream name: %w", err)
	}
	b := &natsBackend{cfg: cfg, log: log, stream: cfg.NATSStream}
	opts, failed := b.options("citycard-bus")
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		failed()
		return nil, fmt.Errorf("nats backend: connect %s: %w", cfg.NATSURL, err)
	}
	b.nc = nc
	if b.js, err = nc.JetStream(nats.Context(ctx)); err == nil {
		err = b.ensureStream(ctx)
	}
	if err == nil {
		opts, failed := b.options("citycard-bus-publisher")
		b.pub, err = wnats.NewPublisher(wnats.PublisherConfig{
			URL:         cfg.NATSURL,
			NatsOptions: opts,
			Marshaler:   &wnats.NATSMarshaler{},
			JetStream:   wnats.JetStreamConfig{TrackMsgId: true},
		}, log)
		if err != nil {
			failed()
		}
	}
	if err != nil {
		nc.Close()
		b.closers.Wait()
		return nil, fmt.Errorf("nats backend: %w", err)
	}
	return b, nil
}

// options names a connection and counts it, so close can wait until every
// connection's goroutines are gone. Call failed if the connection is never
// made, since only a made one reports its closing.
func (b *natsBackend) options(name string) (opts []nats.Option, failed func()) {
	b.closers.Add(1)
	return []nats.Option{
		nats.Name(name),
		nats.Timeout(5 * time.Second),
		nats.ClosedHandler(func(*nats.Conn) { b.closers.Done() }),
	}, b.closers.Done
}

func (b *natsBackend) subject(topic string) string { return b.stream + "." + topic }

func (b *natsBackend) ensureStream(ctx context.Context) error {
	_, err := b.js.StreamInfo(b.stream, nats.Context(ctx))
	if err == nil {
		return nil
	}
	if !errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", b.stream, err)
	}
	_, err = b.js.AddStream(&nats.StreamConfig{
		Name:       b.stream,
		Subjects:   []string{b.stream + ".>"},
		Storage:    nats.FileStorage,
		Retention:  nats.LimitsPolicy,
		MaxAge:     b.cfg.NATSMaxAge,
		Duplicates: 2 * time.Minute,
	}, nats.Context(ctx))
	if err != nil && !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", b.stream, err)
	}
	return nil
}

// ensureConsumer creates the handler's durable consumer, or brings its ack
// wait up to date. The bus creates it rather than the client library,
// because the library deletes a consumer it created when the subscription
// closes, and a handler's position in the stream must outlive the process.
func (b *natsBackend) ensureConsumer(handler, topic string) error {
	want := &nats.ConsumerConfig{
		Durable:        handler,
		DeliverSubject: "_CITYCARD_DELIVER." + b.stream + "." + handler,
		DeliverGroup:   handler,
		FilterSubject:  b.subject(topic),
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        b.cfg.deliveryBudget(),
		MaxAckPending:  natsMaxAckPending,
		MaxDeliver:     -1,
	}
	info, err := b.js.ConsumerInfo(b.stream, handler)
	switch {
	case errors.Is(err, nats.ErrConsumerNotFound):
		_, err = b.js.AddConsumer(b.stream, want)
	case err != nil:
	case info.Config.FilterSubject != want.FilterSubject:
		err = fmt.Errorf("consumer %s follows %s, not %s: a handler name stays with its topic",
			handler, info.Config.FilterSubject, want.FilterSubject)
	case info.Config.AckWait != want.AckWait:
		_, err = b.js.UpdateConsumer(b.stream, want)
	}
	return err
}

func (b *natsBackend) inProcess() bool { return false }

func (b *natsBackend) publish(topic string, msgs ...*message.Message) error {
	return b.pub.Publish(b.subject(topic), msgs...)
}

func (b *natsBackend) subscriber(handler, topic string) (message.Subscriber, error) {
	if err := b.ensureConsumer(handler, topic); err != nil {
		return nil, err
	}
	budget := b.cfg.deliveryBudget()
	opts, failed := b.options("citycard-bus-" + handler)
	sub, err := wnats.NewSubscriber(wnats.SubscriberConfig{
		URL:              b.cfg.NATSURL,
		NatsOptions:      opts,
		QueueGroupPrefix: handler,
		SubscribersCount: 1,
		AckWaitTimeout:   budget,
		CloseTimeout:     b.cfg.CloseTimeout,
		Unmarshaler:      &wnats.NATSMarshaler{},
		// A message left for redelivery (shutdown, store down) waits a
		// little rather than spinning.
		NakDelay: wnats.NewStaticDelay(time.Second),
		JetStream: wnats.JetStreamConfig{
			DurablePrefix:    handler,
			SubscribeOptions: []nats.SubOpt{nats.Bind(b.stream, handler), nats.ManualAck()},
		},
	}, b.log)
	if err != nil {
		failed()
		return nil, err
	}
	b.mu.Lock()
	b.subs = append(b.subs, sub)
	b.mu.Unlock()
	return subjectSubscriber{sub, b}, nil
}

func (b *natsBackend) publishDeadLetter(_, dead *message.Message) error {
	return b.pub.Publish(b.subject(TopicDeadLetters), dead)
}

func (b *natsBackend) close() error {
	b.mu.Lock()
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	errs = append(errs, b.pub.Close())
	b.nc.Close()
	// Subscribers drain in the background; wait for them so nothing of the
	// bus outlives Close.
	done := make(chan struct{})
	go func() { b.closers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.cfg.CloseTimeout):
		errs = append(errs, errors.New("nats connections still draining"))
	}
	return errors.Join(errs...)
}

// subjectSubscriber subscribes to a topic's subject in the stream.
type subjectSubscriber struct {
	*wnats.Subscriber
	b *natsBackend
}

func (s subjectSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.Subscriber.Subscribe(ctx, s.b.subject(topic))
}
