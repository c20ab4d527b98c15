package storetest

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// sagaTests are the suite's cases for sagas and linked bank cards.
var sagaTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Sagas", testSagas},
	{"SagaConcurrentUpdates", testSagaConcurrentUpdates},
	{"LinkedBankCards", testLinkedBankCards},
	{"SagaEndedByBatch", testSagaEndedByBatch},
}

// A batch ends a saga in its own transaction; a saga the store does not
// hold is left alone.
func testSagaEndedByBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	g, _, err := s.CreateSaga(ctx, store.Saga{Operator: "plugin:pos", Key: "k", Kind: "split_payment", State: store.SagaRunning,
		Data: []byte(`{"step":"bank"}`), CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	b := seed()
	b.SagaStates = []store.SagaState{
		{Operator: "plugin:pos", Key: "k", State: store.SagaDone, Data: []byte(`{"step":"post"}`), At: t0.Add(time.Second)},
		{Operator: "plugin:pos", Key: "nobody", State: store.SagaDone, Data: []byte(`{}`), At: t0},
		// Created with the batch; a create over a taken key changes nothing.
		{Operator: "plugin:pos", Key: "new", Kind: "split_payment", Create: true, State: store.SagaRunning,
			Data: []byte(`{"step":"bank"}`), At: t0.Add(2 * time.Second)},
		{Operator: "plugin:pos", Key: "k", Kind: "other", Create: true, State: store.SagaRunning, Data: []byte(`{}`), At: t0},
	}
	commit(t, s, b)
	created, err := s.GetSaga(ctx, "plugin:pos", "new")
	if err != nil || created.Version != 1 || created.State != store.SagaRunning || created.Kind != "split_payment" ||
		!created.CreatedAt.Equal(norm(t0.Add(2*time.Second))) || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("saga created by the batch: %+v %v", created, err)
	}
	jsonEqual(t, created.Data, []byte(`{"step":"bank"}`))
	got, err := s.GetSaga(ctx, "plugin:pos", "k")
	if err != nil || got.State != store.SagaDone || got.Version != g.Version+1 || !got.UpdatedAt.Equal(norm(t0.Add(time.Second))) {
		t.Fatalf("saga after the batch: %+v %v", got, err)
	}
	jsonEqual(t, got.Data, []byte(`{"step":"post"}`))
	if _, err := s.GetSaga(ctx, "plugin:pos", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a saga the store did not hold: %v", err)
	}
}

func jsonEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored data %q is not JSON: %v", got, err)
	}
	_ = json.Unmarshal(want, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("data = %s, want %s", got, want)
	}
}

func testSagas(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	g := store.Saga{Operator: "plugin:pos", Key: "k1", Kind: "fallback", State: store.SagaRunning,
		Data: []byte(`{"step":"hold","amount":700}`), CreatedAt: t0}
	if err := (&store.Saga{Operator: "x", Key: "y", Kind: "z", State: "lost", Data: []byte("{}")}).Check(); err == nil {
		t.Fatal("a saga in state lost passed Check")
	}
	got, created, err := s.CreateSaga(ctx, g)
	if err != nil || !created {
		t.Fatalf("CreateSaga = %v, %v", created, err)
	}
	if got.Version != 1 || !got.CreatedAt.Equal(norm(t0)) {
		t.Fatalf("created saga = %+v", got)
	}
	// The same key again returns the first saga, whatever the new data.
	again, created, err := s.CreateSaga(ctx, store.Saga{Operator: "plugin:pos", Key: "k1", Kind: "fallback",
		State: store.SagaRunning, Data: []byte(`{"step":"other"}`), CreatedAt: t0.Add(time.Hour)})
	if err != nil || created {
		t.Fatalf("second CreateSaga = %v, %v; want the existing saga", created, err)
	}
	jsonEqual(t, again.Data, g.Data)
	// Another operator's key is another saga.
	if _, created, err := s.CreateSaga(ctx, store.Saga{Operator: "plugin:medical", Key: "k1", Kind: "medical",
		State: store.SagaRunning, Data: []byte(`{}`), CreatedAt: t0.Add(time.Second)}); err != nil || !created {
		t.Fatalf("CreateSaga of another operator = %v, %v", created, err)
	}

	got.State, got.Data, got.UpdatedAt = store.SagaCompensating, []byte(`{"step":"bank","amount":700}`), t0.Add(time.Minute)
	up, err := s.UpdateSaga(ctx, got)
	if err != nil {
		t.Fatalf("UpdateSaga: %v", err)
	}
	if up.Version != 2 || up.State != store.SagaCompensating || !up.UpdatedAt.Equal(norm(t0.Add(time.Minute))) {
		t.Fatalf("updated saga = %+v", up)
	}
	// Writing over the version read before is refused.
	if _, err := s.UpdateSaga(ctx, got); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateSaga of a stale version: %v, want ErrConflict", err)
	}
	if _, err := s.UpdateSaga(ctx, store.Saga{Operator: "plugin:pos", Key: "nope", Kind: "fallback",
		State: store.SagaDone, Data: []byte(`{}`), Version: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateSaga of an unknown saga: %v, want ErrNotFound", err)
	}
	read, err := s.GetSaga(ctx, "plugin:pos", "k1")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, read.Data, up.Data)
	if read.Version != 2 || read.Kind != "fallback" {
		t.Fatalf("GetSaga = %+v", read)
	}
	if _, err := s.GetSaga(ctx, "plugin:pos", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSaga of an unknown key: %v", err)
	}

	open, err := s.OpenSagas(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 || open[0].Key != "k1" || open[0].Operator != "plugin:pos" || open[1].Operator != "plugin:medical" {
		t.Fatalf("OpenSagas = %+v, want both, oldest first", open)
	}
	read.State, read.UpdatedAt = store.SagaUndone, t0.Add(2*time.Minute)
	if _, err := s.UpdateSaga(ctx, read); err != nil {
		t.Fatal(err)
	}
	open, err = s.OpenSagas(ctx, 10)
	if err != nil || len(open) != 1 || open[0].Operator != "plugin:medical" {
		t.Fatalf("OpenSagas after one ended = %+v, %v", open, err)
	}
	if open, err := s.OpenSagas(ctx, 0); err != nil || len(open) != 0 {
		t.Fatalf("OpenSagas(0) = %d sagas, %v", len(open), err)
	}
	// By kind and creation time, whatever their state.
	day, err := s.SagasCreated(ctx, "fallback", t0.Add(-time.Second), t0.Add(time.Second))
	if err != nil || len(day) != 1 || day[0].Key != "k1" || day[0].State != store.SagaUndone {
		t.Fatalf("SagasCreated(fallback) = %+v, %v", day, err)
	}
	if none, err := s.SagasCreated(ctx, "fallback", t0.Add(time.Second), t0.Add(time.Hour)); err != nil || len(none) != 0 {
		t.Fatalf("SagasCreated after = %+v, %v", none, err)
	}
	if med, err := s.SagasCreated(ctx, "medical", t0, t0.Add(time.Hour)); err != nil || len(med) != 1 {
		t.Fatalf("SagasCreated(medical) = %+v, %v", med, err)
	}
}

// Of writers racing over one version, exactly one wins.
func testSagaConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	g, _, err := s.CreateSaga(ctx, store.Saga{Operator: "plugin:pos", Key: "race", Kind: "fallback",
		State: store.SagaRunning, Data: []byte(`{}`), CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := g
			u.Data, u.UpdatedAt = []byte(`{"writer":`+string(rune('0'+i))+`}`), t0.Add(time.Second)
			_, err := s.UpdateSaga(ctx, u)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("UpdateSaga: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d writers won over one version, want 1", wins)
	}
}

func testLinkedBankCards(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	commit(t, s, seed())
	if _, err := s.LinkedBankCard(ctx, card1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LinkedBankCard before a link: %v", err)
	}
	l := store.LinkedBankCard{Card: card1, Token: "tok_1", MaskedPAN: "622202******1234", Last4: "1234", LinkedAt: t0}
	if err := s.LinkBankCard(ctx, l); err != nil {
		t.Fatal(err)
	}
	got, err := s.LinkedBankCard(ctx, card1)
	if err != nil {
		t.Fatal(err)
	}
	l.LinkedAt = norm(t0)
	if got != l {
		t.Fatalf("LinkedBankCard = %+v, want %+v", got, l)
	}
	// Linking another bank card replaces the first.
	l2 := store.LinkedBankCard{Card: card1, Token: "tok_2", MaskedPAN: "621700******9876", Last4: "9876", LinkedAt: t0.Add(time.Hour)}
	if err := s.LinkBankCard(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LinkedBankCard(ctx, card1); got.Token != "tok_2" || got.Last4 != "9876" {
		t.Fatalf("after re-link: %+v", got)
	}
	// Only a card the hub issued can have a link.
	if err := s.LinkBankCard(ctx, store.LinkedBankCard{Card: "3100019999999999", Token: "t", Last4: "0000", LinkedAt: t0}); err == nil {
		t.Fatal("linked a bank card to a card the hub never issued")
	}
	if err := s.LinkBankCard(ctx, store.LinkedBankCard{Card: card1, Token: "t", Last4: "12", LinkedAt: t0}); err == nil {
		t.Fatal("linked with a two-digit last4")
	}
	if err := s.UnlinkBankCard(ctx, card1); err != nil {
		t.Fatal(err)
	}
	if err := s.UnlinkBankCard(ctx, card1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second unlink: %v, want ErrNotFound", err)
	}
	if _, err := s.LinkedBankCard(ctx, card1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LinkedBankCard after unlink: %v", err)
	}
}
