package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// These tests use the sdk and plugintest the way a partner's tests did
// before the host side left package sdk; they must keep compiling and
// passing without an edit.

var config = map[string]any{"fare_per_half_hour": 150, "merchant": "M-BIKES"}

func ride(id string, minutes int) sdk.Message {
	return plugintest.NewMessage("bikes.return.v1",
		map[string]any{"ride": id, "card": "8860001234567890", "minutes": minutes})
}

func TestDockChargesTheRideOnce(t *testing.T) {
	h := plugintest.Start(t, &Dock{})
	if d := h.Describe(); d.Name != "bikes" || len(d.ProtocolVersions) != 1 || d.ProtocolVersions[0] != sdk.ProtocolVersion {
		t.Fatalf("descriptor = %+v", d)
	}
	if err := h.Configure(config); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a redelivery is charged once
		replies, err := h.Handle(ride("D7-000381", 42))
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 1 || replies[0].Type != "bikes.receipt.v1" || replies[0].Source != "bikes" {
			t.Fatalf("replies = %+v", replies)
		}
	}
	fares := h.Submitted()
	if len(fares) != 1 || string(fares[0].Payload) != `{"amount":300,"card":"8860001234567890","currency":"CNY","merchant":"M-BIKES"}` {
		t.Errorf("the hub got %+v", fares)
	}
}

func TestDockRefusesBadConfigurationAndMessages(t *testing.T) {
	h := plugintest.Start(t, &Dock{})
	var e *sdk.Error
	if err := h.Configure(map[string]any{"fare_per_half_hour": 0, "merchant": "M-BIKES"}); !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid {
		t.Fatalf("a zero fare: %v", err)
	}
	if _, err := h.Handle(ride("D7-000382", 5)); !errors.Is(err, &sdk.Error{Code: sdk.CodeNotConfigured}) {
		t.Fatalf("before Configure: %v", err)
	}
	if err := h.Configure(config); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ride("D7-000383", -1)); !errors.As(err, &e) || e.Code != sdk.CodeSchemaInvalid || e.Field != "/payload/minutes" {
		t.Fatalf("negative minutes: %v", err)
	}
	if len(h.Submitted()) != 0 {
		t.Errorf("the hub got %+v", h.Submitted())
	}
}

func TestDockPassesOnTheHubsAnswer(t *testing.T) {
	hub := plugintest.NewFakeHub()
	hub.RespondWith(func(m sdk.Message) (json.RawMessage, error) {
		if m.IdempotencyKey == "bikes-D7-declined" {
			return nil, &sdk.Error{Code: "insufficient_funds", Message: "the purse is short"}
		}
		return json.RawMessage(`{"status":"approved"}`), nil
	})
	h := plugintest.Start(t, &Dock{}, plugintest.WithHub(hub))
	if err := h.Configure(config); err != nil {
		t.Fatal(err)
	}
	replies, err := h.Handle(ride("D7-000384", 10))
	if err != nil {
		t.Fatal(err)
	}
	if string(replies[0].Payload) != `{"amount":150,"hub":{"status":"approved"}}` {
		t.Errorf("receipt = %s", replies[0].Payload)
	}
	if _, err := h.Handle(ride("D7-declined", 10)); !errors.Is(err, &sdk.Error{Code: "insufficient_funds"}) {
		t.Errorf("declined: %v", err)
	}
}

func TestDockReportsASlowOrFailingHub(t *testing.T) {
	h := plugintest.Start(t, &Dock{}, plugintest.WithTimeout(300*time.Millisecond))
	if err := h.Configure(config); err != nil {
		t.Fatal(err)
	}
	h.Hub().SetDelay(time.Second)
	var e *sdk.Error
	if _, err := h.Handle(ride("D7-000385", 10)); !errors.As(err, &e) || e.Code != sdk.CodeTimeout || !e.Retryable {
		t.Errorf("slow hub: %v", err)
	}
	h.Hub().SetDelay(0)
	h.Hub().FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Retryable: true})
	if _, err := h.Handle(ride("D7-000386", 10)); !errors.As(err, &e) || e.Code != sdk.CodeUnavailable || !e.Retryable {
		t.Errorf("failing hub: %v", err)
	}
	h.Hub().FailWith(nil)
	// The harness's client, with a context of the test's own.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.Client().Handle(ctx, ride("D7-000387", 10)); err != nil {
		t.Error(err)
	}
	if err := h.Health(); err != nil {
		t.Errorf("health: %v", err)
	}
}

func TestHarnessOutsideATest(t *testing.T) {
	h, err := plugintest.New(&Dock{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Configure(config); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
