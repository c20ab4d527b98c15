package bus

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// goChannelBackend keeps messages in memory. The router's Publish waits
// until every handler is done with a message (see Router.publishWait):
// handled, dropped as a duplicate or dead-lettered, so the caller (a plugin
// waiting on the hub) gets an answer only once the hub is done, and a
// message is never left sitting in memory where a crash would lose it
// unnoticed. GoChannel's own wait is off: it holds a lock per topic while it
// waits, which would let one message of a topic through at a time. It is not
// persistent: a persistent GoChannel keeps every message forever to replay
// to late subscribers, which only grows.
type goChannelBackend struct {
	gc *gochannel.GoChannel
}

func newGoChannelBackend(log watermill.LoggerAdapter) *goChannelBackend {
	return &goChannelBackend{gc: gochannel.NewGoChannel(gochannel.Config{
		BlockPublishUntilSubscriberAck: false,
	}, log)}
}

func (b *goChannelBackend) inProcess() bool { return true }

func (b *goChannelBackend) publish(topic string, msgs ...*message.Message) error {
	return b.gc.Publish(topic, msgs...)
}

// subscriber returns the one GoChannel: every Subscribe on it gets every
// message of the topic, so each handler sees each message.
func (b *goChannelBackend) subscriber(string, string) (message.Subscriber, error) {
	return b.gc, nil
}

func (b *goChannelBackend) publishDeadLetter(_, dead *message.Message) error {
	return b.gc.Publish(TopicDeadLetters, dead)
}

func (b *goChannelBackend) close() error { return b.gc.Close() }
