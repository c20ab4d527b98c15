package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Saga states. A saga is open while running or compensating; it ends done
// (every leg completed) or undone (every completed leg compensated).
const (
	SagaRunning      = "running"
	SagaCompensating = "compensating"
	SagaDone         = "done"
	SagaUndone       = "undone"
)

// Saga is the durable record of a payment made of several legs with
// partners (a bank, an insurer) beside the ledger: which legs completed and
// what undoes them. Data is the saga's own JSON; the store keeps it as
// given. A saga is named by the operator and idempotency key of the request
// that started it.
type Saga struct {
	Operator  string
	Key       string
	Kind      string
	State     string
	Data      []byte
	Version   int64 // moves by one at each update; an update names the version it read
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Open reports whether the saga has not ended.
func (s Saga) Open() bool { return s.State == SagaRunning || s.State == SagaCompensating }

// Check checks a saga before it is written.
func (s *Saga) Check() error {
	switch {
	case s.Operator == "" || s.Key == "":
		return errors.New("a saga needs an operator and a key")
	case s.Kind == "":
		return errors.New("a saga needs a kind")
	case s.State != SagaRunning && s.State != SagaCompensating && s.State != SagaDone && s.State != SagaUndone:
		return fmt.Errorf("saga state %q is not one of running, compensating, done, undone", s.State)
	case len(s.Data) == 0:
		return errors.New("a saga needs its data")
	}
	return nil
}

// LinkedBankCard is a bank card a holder linked to a city card to pay what
// the city card cannot. The hub keeps the acquirer's token and the masked
// number only, never the card number.
type LinkedBankCard struct {
	Card      string // the city card
	Token     string // the acquirer's token for the bank card
	MaskedPAN string // first six and last four digits
	Last4     string
	LinkedAt  time.Time
}

// Check checks a link before it is written.
func (l *LinkedBankCard) Check() error {
	switch {
	case l.Card == "" || l.Token == "":
		return errors.New("a linked bank card needs the city card and a token")
	case len(l.Last4) != 4:
		return errors.New("last4 must be four digits")
	}
	return nil
}

// SagaStore holds sagas and linked bank cards, written outside the group
// commit.
type SagaStore interface {
	// CreateSaga inserts s (Version 1) and reports true, or returns the
	// saga already stored under its operator and key and false.
	CreateSaga(ctx context.Context, s Saga) (Saga, bool, error)
	// UpdateSaga writes s's state and data if the stored version is still
	// s.Version, and returns it at its new version; a stale version is an
	// error wrapping ErrConflict, an unknown saga one wrapping ErrNotFound.
	UpdateSaga(ctx context.Context, s Saga) (Saga, error)
	// GetSaga returns one saga or an error wrapping ErrNotFound.
	GetSaga(ctx context.Context, operator, key string) (Saga, error)
	// OpenSagas lists up to limit sagas still running or compensating,
	// oldest first.
	OpenSagas(ctx context.Context, limit int) ([]Saga, error)
	// SagasCreated lists the sagas of kind created in [from, to), oldest
	// first.
	SagasCreated(ctx context.Context, kind string, from, to time.Time) ([]Saga, error)

	// LinkBankCard links (or re-links) a bank card to a city card.
	LinkBankCard(ctx context.Context, l LinkedBankCard) error
	// UnlinkBankCard removes a card's link, or returns an error wrapping
	// ErrNotFound.
	UnlinkBankCard(ctx context.Context, card string) error
	// LinkedBankCard returns a card's link or an error wrapping ErrNotFound.
	LinkedBankCard(ctx context.Context, card string) (LinkedBankCard, error)
}
