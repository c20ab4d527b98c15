package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/citycard/citycard/hub/internal/store"
)

// PostgreSQL layout: one table of messages per topic and one of consumer
// offsets per topic, in the pool's search_path, as watermill-sql makes them.
// Payloads are BYTEA, not watermill's default JSON, so any body is carried
// byte for byte.
var (
	pgSchema = wsql.DefaultPostgreSQLSchema{
		GenerateMessagesTableName: func(topic string) string { return pgTable("watermill_", topic) },
		GeneratePayloadType:       func(string) string { return "BYTEA" },
		// Rows read per transaction: a crash redelivers at most this many.
		SubscribeBatchSize: 10,
	}
	pgOffsets = wsql.DefaultPostgreSQLOffsetsAdapter{
		GenerateMessagesOffsetsTableName: func(topic string) string { return pgTable("watermill_offsets_", topic) },
	}
)

// pgTable quotes prefix+topic as a table name. PostgreSQL cuts identifiers
// at 63 bytes without an error, which could give two long topics one table,
// so a name that would be cut ends in a hash of the topic instead.
func pgTable(prefix, topic string) string {
	const maxIdent = 63
	name := prefix + topic
	if len(name) > maxIdent {
		sum := sha256.Sum256([]byte(topic))
		name = name[:maxIdent-13] + "_" + hex.EncodeToString(sum[:6])
	}
	return `"` + name + `"`
}

// postgresBackend stores messages in PostgreSQL. Delivery is at least once
// per handler (each is a consumer group), in commit order per topic; hub
// nodes sharing the database share each handler's messages, one node per
// message. A handler's message is read in a transaction that stays open
// while it runs, its offset is acknowledged in that transaction, and a dead
// letter is written in it too: a message is dead-lettered exactly when it is
// acknowledged.
type postgresBackend struct {
	pool *pgxpool.Pool
	cfg  *Config
	log  watermill.LoggerAdapter
	pub  *wsql.Publisher

	mu   sync.Mutex
	subs []*wsql.Subscriber
}

func newPostgresBackend(ctx context.Context, cfg *Config, log watermill.LoggerAdapter) (*postgresBackend, error) {
	if cfg.PostgresPool == nil {
		return nil, errors.New("postgres backend: Config.PostgresPool is nil")
	}
	if err := cfg.PostgresPool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("postgres backend: %w", err)
	}
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(cfg.PostgresPool), wsql.PublisherConfig{
		SchemaAdapter:        pgSchema,
		AutoInitializeSchema: true,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("postgres backend: %w", err)
	}
	return &postgresBackend{pool: cfg.PostgresPool, cfg: cfg, log: log, pub: pub}, nil
}

func (b *postgresBackend) inProcess() bool { return false }

func (b *postgresBackend) publish(topic string, msgs ...*message.Message) error {
	return b.pub.Publish(topic, msgs...)
}

func (b *postgresBackend) subscriber(handler, topic string) (message.Subscriber, error) {
	// A message held longer than this is delivered again; let the handler
	// use all its attempts first.
	ackDeadline := b.cfg.deliveryBudget()
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(b.pool), wsql.SubscriberConfig{
		ConsumerGroup:    handler,
		AckDeadline:      &ackDeadline,
		PollInterval:     b.cfg.PollInterval,
		SchemaAdapter:    pgSchema,
		OffsetsAdapter:   pgOffsets,
		InitializeSchema: true,
	}, b.log)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.subs = append(b.subs, sub)
	b.mu.Unlock()
	// Create the tables now rather than at the first message, so a dead
	// letter written inside a handler's transaction finds its table.
	if err := sub.SubscribeInitialize(topic); err != nil {
		return nil, fmt.Errorf("create tables of %s: %w", topic, err)
	}
	return sub, nil
}

func (b *postgresBackend) publishDeadLetter(orig, dead *message.Message) error {
	tx, ok := wsql.TxFromContext(orig.Context())
	if !ok {
		return b.pub.Publish(TopicDeadLetters, dead)
	}
	// In the transaction that acknowledges orig: both happen or neither.
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: pgSchema}, b.log)
	if err != nil {
		return err
	}
	dead.SetContext(orig.Context())
	return pub.Publish(TopicDeadLetters, dead)
}

func (b *postgresBackend) close() error {
	b.mu.Lock()
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	return errors.Join(append(errs, b.pub.Close())...)
}

// OutboxStatements is the store.OutboxEncoder of a BackendPostgres router
// in the store's own database (store.SharedDatabase): it turns a ledger
// batch's messages into the statements that make each topic's table when
// missing and insert its messages, and the store runs them in the batch's
// transaction. The messages are delivered if and only if the batch commits,
// so a ledger commit and the messages it emits cannot part (the outbox
// pattern). They get correlation IDs from ctx as with Router.Publish.
// Topics keep the order of their first message, messages theirs.
func OutboxStatements(ctx context.Context, msgs []store.OutboxMessage) ([]store.OutboxTopic, error) {
	byTopic := map[string][]*message.Message{}
	var topics []string
	for _, m := range msgs {
		if _, ok := byTopic[m.Topic]; !ok {
			if err := ValidateTopic(m.Topic); err != nil {
				return nil, err
			}
			topics = append(topics, m.Topic)
		}
		wm := message.NewMessage(m.UUID, m.Payload)
		for k, v := range m.Metadata {
			wm.Metadata.Set(k, v)
		}
		byTopic[m.Topic] = append(byTopic[m.Topic], wm)
	}
	out := make([]store.OutboxTopic, 0, len(topics))
	for _, topic := range topics {
		wms := byTopic[topic]
		stamp(ctx, wms)
		q, err := pgSchema.InsertQuery(wsql.InsertQueryParams{Topic: topic, Msgs: wms})
		if err != nil {
			return nil, fmt.Errorf("bus: outbox to %s: %w", topic, err)
		}
		out = append(out, store.OutboxTopic{
			Table:  pgSchema.MessagesTable(topic),
			Create: func() ([]store.Statement, error) { return topicTable(topic) },
			Insert: []store.Statement{{Query: q.Query, Args: q.Args}},
		})
	}
	return out, nil
}

// topicTable is what makes topic's message table when no subscriber has
// yet. It takes watermill's advisory lock, held to the end of the
// transaction, so two first publishers do not race.
func topicTable(topic string) ([]store.Statement, error) {
	queries, err := pgSchema.SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return nil, fmt.Errorf("bus: table of %s: %w", topic, err)
	}
	stmts := make([]store.Statement, len(queries))
	for i, q := range queries {
		stmts[i] = store.Statement{Query: q.Query, Args: q.Args}
	}
	return stmts, nil
}
