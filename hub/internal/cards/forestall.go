package cards

import (
	"context"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
)

// Forestalled is the status stored under a key that an undo took before
// any request used it.
const Forestalled = "forestalled"

// forestallHash is the request hash of a forestalled key: no real request
// hashes to it, so a request that arrives later under the key is refused
// as an idempotency conflict and writes nothing.
const forestallHash = "forestalled-by-an-undo"

// forestall writes nothing but its idempotency record.
type forestall struct{}

func (forestall) Prefetch(*ledger.Keys) {}

func (forestall) Apply(*ledger.Tx) (any, error) { return forestallResult{}, nil }

type forestallResult struct{}

func (forestallResult) AuditOutcome() string { return Forestalled }

// Forestall takes the idempotency key key of c's operator for an undo (a
// reversal or a void, made by c) that found nothing under it: the request
// it undoes may still be on its way — its plugin died before it learned
// the answer, and the terminal reversed first. The single writer orders
// the two. Taken reports true when the key is now the undo's, so the
// request, if it comes, is refused and writes nothing; false when the
// request got there first, and its answer can now be read with Answer.
func (s *Service) Forestall(ctx context.Context, c Call, key string) (taken bool, err error) {
	c.IdempotencyKey, c.RequestHash = key, forestallHash
	c.Encode = func(any) (int, []byte, error) { return 409, []byte(`{"status":"` + Forestalled + `"}`), nil }
	_, err = s.submit(ctx, c, "payments.forestall", key, forestall{})
	switch {
	case err == nil:
		return true, nil
	case fault.Is(err, fault.IdempotencyConflict):
		return false, nil
	}
	return false, err
}

var _ ledger.Op = forestall{}
