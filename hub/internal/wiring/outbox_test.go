package wiring_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
)

// TestLedgerOutbox runs the hub with its router in its own PostgreSQL
// store (--bus postgres): every committed transfer is emitted on
// hub.ledger.transfer.posted.v1 from the batch's own transaction, and a
// router subscribed there receives each one.
func TestLedgerOutbox(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	st := storetest.OpenPostgres(t)
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet, Bus: wiring.BusStore})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	t.Cleanup(func() { stop(); <-done })

	var mu sync.Mutex
	events := map[string]ledger.TransferEvent{}
	r, err := bus.New(context.Background(), bus.Config{Backend: bus.BackendPostgres, PostgresPool: st.(store.SharedDatabase).Pool(),
		Logger: quiet, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Handle("outbox-test", ledger.TopicTransferPosted, func(_ context.Context, m *message.Message) error {
		var ev ledger.TransferEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			return err
		}
		mu.Lock()
		events[ev.ID] = ev
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	c.must("POST", "/v1/merchants", map[string]any{"id": "M1", "name": "Shop", "mcc": "5411", "settlement_account": "1"}, 201)
	card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
	c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 5000, "currency": "CNY"}, 201)
	paid := c.must("POST", "/v1/payments", map[string]any{"card": card, "channel": "retail", "merchant": "M1", "amount": 1250, "currency": "CNY"}, 201)
	id := paid["id"].(string)

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		ev, ok := events[id]
		n := len(events)
		mu.Unlock()
		if ok {
			if ev.Kind != store.TransferPayment || ev.Card != card || ev.Amount != 1250 || ev.Merchant != "M1" || ev.Channel != "retail" {
				t.Fatalf("payment event %+v", ev)
			}
			// The card's deposit, its top-up and the payment.
			if n < 3 {
				t.Fatalf("%d events, want one per transfer (3)", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event for payment %s; got %v", id, events)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutboxFailureRollsBackTheBatch: when the outbox cannot be written,
// the batch's transaction rolls back, so no transfer commits without its
// messages.
func TestOutboxFailureRollsBackTheBatch(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	st := storetest.OpenPostgres(t)
	pg := st.(store.SharedDatabase)
	eng, err := ledger.Open(context.Background(), st, ledger.Config{Logger: quiet, TransferEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	broken := errors.New("outbox table unreachable")
	pg.SetOutbox(func(context.Context, []store.OutboxMessage) ([]store.OutboxTopic, error) { return nil, broken })
	_, err = eng.Submit(context.Background(), postOp{}, ledger.SubmitOptions{})
	if err == nil {
		t.Fatal("a batch whose outbox failed was committed")
	}
	n, err := st.CountRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n["transfers"] != 0 {
		t.Fatalf("%d transfers committed without their messages", n["transfers"])
	}
}

// postOp moves 100 from a cash account into a new purse.
type postOp struct{}

func (postOp) Prefetch(k *ledger.Keys) { k.Account("cash:outbox-test", "purse:outbox-test") }

func (postOp) Apply(tx *ledger.Tx) (any, error) {
	from := tx.EnsureAccount(store.Account{Code: "cash:outbox-test", Kind: store.KindCash, Currency: "CNY"})
	to := tx.EnsureAccount(store.Account{Code: "purse:outbox-test", Kind: store.KindPurse, Currency: "CNY"})
	return tx.Post(store.Transfer{Kind: store.TransferAdjust, Currency: "CNY",
		Entries: []store.Entry{{Account: from.ID, Amount: 100}, {Account: to.ID, Amount: -100}}}, time.Time{})
}
