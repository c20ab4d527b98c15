// Package bus is the hub's message router: it carries what plugins send
// (published by the plugin host on topics "plugin.<plugin>.<type>") to the
// hub services that handle it, and what services send out ("hub.<service>.
// <type>"), over watermill.
//
// Every handler runs inside the same middleware, outermost first:
//
//   - correlation ID: taken from the message's "correlation_id" metadata, or
//     made when absent, put in the handler's context (CorrelationID) and in
//     log lines (NewLogHandler);
//   - poison queue: a message whose handler failed for good is published to
//     TopicDeadLetters with the reason, handler and topic, stored by the
//     router in a DeadLetterStore, and acknowledged; Router.Replay sends it
//     again;
//   - de-duplication: a message whose "idempotency_key" the handler already
//     handled (IdempotencyStore) is acknowledged without running;
//   - retry: errors marked Retryable, and timeouts, are retried with
//     exponential backoff; other errors go to the poison queue at once;
//   - timeout: each attempt gets Config.HandlerTimeout;
//   - recovery: a panic becomes a *PanicError, dead-lettered like any
//     non-retryable error.
//
// What each backend guarantees:
//
//   - gochannel (default): in process, nothing survives a restart. Publish
//     returns once every handler of the topic is done with the message
//     (handled, duplicate or dead-lettered), so a message is never queued
//     out of sight; it refuses a topic nobody handles and any publish before
//     Start. One message at a time per topic.
//   - postgres: durable, at least once per handler, in commit order per
//     topic; several hub nodes on one database share each handler's
//     messages. OutboxStatements has the store write a ledger batch's
//     messages in its transaction (outbox): delivered if and only if it
//     commits. A dead letter is
//     written in the transaction that acknowledges its message. Latency is
//     the poll interval.
//   - nats: durable (a JetStream stream), at least once per handler, in order
//     per handler; several hub nodes share each handler's messages. Publish
//     returns once JetStream stored the message, and a re-publish of the
//     same message UUID within two minutes is stored once.
//
// At least once means a handler can see a message twice (a node died holding
// it, or the acknowledgement was lost): the bus's de-duplication catches
// what it remembers, and the services' own idempotency (the ledger's
// idempotency key plus request hash) is the final guard.
package bus
