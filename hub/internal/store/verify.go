package store

import (
	"context"
	"errors"
	"time"
)

// ErrLocked is returned by LockWriter when another process holds the
// store's writer lock.
var ErrLocked = errors.New("store: in use by a running hub")

// ErrNoStore is returned when a store opened as existing does not exist, or
// holds no CityCard schema.
var ErrNoStore = errors.New("store: no such store")

// CheckpointStart records, in the store itself, that a hub began signing
// checkpoints of this ledger, so that verify can tell a store that never had
// a checkpoint log from one whose log went missing.
type CheckpointStart struct {
	KeyName  string    // the signing key's name
	Verifier string    // the verifier key, as note.NewVerifier reads it
	Log      string    // where the hub appended its checkpoints
	Batch    int64     // the batch of the first checkpoint
	At       time.Time // when it was signed
}

// VerifyStore holds the reads that verify needs beyond the engine's, and the
// writer lock that keeps two hubs, or a hub and verify, off one store.
type VerifyStore interface {
	// IdempotencyRecords streams every idempotency record, by operator and
	// key.
	IdempotencyRecords(ctx context.Context, fn func(IdemRecord) error) error
	// AllSagas streams every saga, by operator and key.
	AllSagas(ctx context.Context, fn func(Saga) error) error
	// CheckpointStarted returns the record of the first checkpoint, or an
	// error wrapping ErrNotFound when no hub ever signed one.
	CheckpointStarted(ctx context.Context) (CheckpointStart, error)
	// StartCheckpoints records c unless a record is already stored, and
	// returns the one stored.
	StartCheckpoints(ctx context.Context, c CheckpointStart) (CheckpointStart, error)
	// LockWriter takes the store's writer lock without waiting, and
	// returns how to release it; held by another process it is an error
	// wrapping ErrLocked. The lock is the process's, not a transaction's:
	// it lasts until released or the process ends.
	LockWriter(ctx context.Context) (release func() error, err error)
}
