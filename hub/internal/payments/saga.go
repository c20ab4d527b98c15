package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// sagaRecord keeps a saga's row and writes it over the version it read.
type sagaRecord struct {
	p   *Processor
	row store.Saga
}

// save writes data (and state) over the version read; a conflict means
// another node's recovery took the saga over.
func (r *sagaRecord) save(ctx context.Context, state string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fault.Wrap(fault.Internal, err)
	}
	row := r.row
	row.State, row.Data, row.UpdatedAt = state, b, time.Now().UTC()
	up, err := r.p.opts.Sagas.UpdateSaga(context.WithoutCancel(ctx), row)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fault.E(fault.InProgress, "", "the payment was taken over by the hub's recovery; ask again")
		}
		return fault.Wrap(fault.Unavailable, err)
	}
	r.row = up
	return nil
}

// startSaga creates the saga of operator's request key, or finds it. A
// saga that has ended gives its recorded answer (done is true); an open one
// is an in_progress error.
func (p *Processor) startSaga(ctx context.Context, c cards.Call, kind string, data any) (*sagaRecord, *ledger.Outcome, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, nil, fault.Wrap(fault.Internal, err)
	}
	now := time.Now().UTC()
	row, created, err := p.opts.Sagas.CreateSaga(ctx, store.Saga{Operator: c.Operator, Key: c.IdempotencyKey, Kind: kind,
		State: store.SagaRunning, Data: b, CreatedAt: now})
	if err != nil {
		return nil, nil, fault.Wrap(fault.Unavailable, err)
	}
	if created {
		return &sagaRecord{p: p, row: row}, nil, nil
	}
	if out, ok, err := p.answered(ctx, c); err != nil {
		return nil, nil, err
	} else if ok && !row.Open() {
		return nil, &out, nil
	}
	return nil, nil, fault.E(fault.InProgress, "idempotency_key",
		fmt.Sprintf("the request with key %q is still being carried out; ask again", c.IdempotencyKey))
}

// RecoverSagas finishes or undoes the sagas no request is carrying on: those
// not written for staleAfter (a hub that stopped half-way). It returns how
// many it closed.
func (p *Processor) RecoverSagas(ctx context.Context, staleAfter time.Duration) (int, error) {
	if p.opts.Sagas == nil {
		return 0, nil
	}
	open, err := p.opts.Sagas.OpenSagas(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, row := range open {
		if time.Since(row.UpdatedAt) < staleAfter {
			continue
		}
		var err error
		switch row.Kind {
		case SagaSplitPayment:
			err = p.recoverSplit(ctx, row)
		case SagaMedical:
			err = p.recoverMedical(ctx, row)
		default:
			continue
		}
		if err != nil {
			p.log.Warn("payments: saga not recovered yet", "kind", row.Kind, "operator", row.Operator, "key", row.Key, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		n++
	}
	return n, firstErr
}
