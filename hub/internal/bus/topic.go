package bus

import (
	"errors"
	"fmt"
	"strings"
)

// Topic prefixes. A topic names who speaks and what kind of message it
// carries, so a log line or a dead letter says where a message came from.
const (
	// PluginPrefix starts the topics of messages coming in from a plugin.
	PluginPrefix = "plugin"
	// ServicePrefix starts the topics of messages a hub service sends out.
	ServicePrefix = "hub"
	// TopicDeadLetters is the poison queue: messages whose handler failed
	// for good, with the reason in their metadata. The router owns it.
	TopicDeadLetters = "deadletters"
)

// Limits on names. Handler names become JetStream durable names and
// PostgreSQL consumer groups, so they stay short and free of dots.
const (
	maxNameLen    = 64
	maxMsgTypeLen = 128
)

// ErrInvalidTopic is wrapped by every topic, name or message-type
// validation error.
var ErrInvalidTopic = errors.New("bus: invalid topic")

// Topic returns the topic of messages of type msgType sent by the plugin
// named plugin: "plugin.<plugin>.<msgType>". It returns "" when either part
// is invalid (see ValidateName and ValidateMessageType); Publish and Handle
// refuse "", so a bad name from a plugin is an error, never a panic.
func Topic(plugin, msgType string) string {
	return join(PluginPrefix, plugin, msgType)
}

// ServiceTopic returns the topic of messages of type msgType sent by the
// hub service named service: "hub.<service>.<msgType>", or "" when either
// part is invalid.
func ServiceTopic(service, msgType string) string {
	return join(ServicePrefix, service, msgType)
}

func join(prefix, name, msgType string) string {
	if ValidateName(name) != nil || ValidateMessageType(msgType) != nil {
		return ""
	}
	return prefix + "." + name + "." + msgType
}

// ValidateName checks a plugin, service or handler name: 1 to 64 characters
// of a-z, 0-9, '_' and '-', starting with a letter or digit. Names carry no
// dots, so "plugin.<name>.<type>" parses one way only.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidTopic)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: name %.20q... longer than %d characters", ErrInvalidTopic, name, maxNameLen)
	}
	if !isAlnum(name[0]) {
		return fmt.Errorf("%w: name %q must start with a-z or 0-9", ErrInvalidTopic, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '_' && c != '-' {
			return fmt.Errorf("%w: name %q: character %q not in a-z0-9_-", ErrInvalidTopic, name, c)
		}
	}
	return nil
}

// ValidateMessageType checks a message type: dot-separated segments, each
// a valid name ("tap", "tap.batch"), at most 128 characters in all.
func ValidateMessageType(msgType string) error {
	if msgType == "" {
		return fmt.Errorf("%w: empty message type", ErrInvalidTopic)
	}
	if len(msgType) > maxMsgTypeLen {
		return fmt.Errorf("%w: message type %.20q... longer than %d characters", ErrInvalidTopic, msgType, maxMsgTypeLen)
	}
	for _, seg := range strings.Split(msgType, ".") {
		if err := ValidateName(seg); err != nil {
			return fmt.Errorf("%w: message type %q: segment %q is not a-z0-9_- starting with a-z0-9", ErrInvalidTopic, msgType, seg)
		}
	}
	return nil
}

// ValidateTopic checks that topic is a plugin or service topic as Topic
// and ServiceTopic build them. TopicDeadLetters is not accepted: only the
// router publishes and subscribes there.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic (Topic and ServiceTopic return \"\" for an invalid name or message type)", ErrInvalidTopic)
	}
	prefix, rest, ok := strings.Cut(topic, ".")
	if !ok || (prefix != PluginPrefix && prefix != ServicePrefix) {
		return fmt.Errorf("%w: %q must start with %q or %q", ErrInvalidTopic, topic, PluginPrefix+".", ServicePrefix+".")
	}
	name, msgType, ok := strings.Cut(rest, ".")
	if !ok {
		return fmt.Errorf("%w: %q has no message type", ErrInvalidTopic, topic)
	}
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("topic %q: %w", topic, err)
	}
	if err := ValidateMessageType(msgType); err != nil {
		return fmt.Errorf("topic %q: %w", topic, err)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
