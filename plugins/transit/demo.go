package transit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// Bundle is the transit plugin as the citycard binary ships it: the plugin
// and the operators' merchants. It starts nothing of its own: the
// validators are the demo flows' simulated ones, and the front end listens
// on a free local port, which the flows ask the plugin for
// (transit.status.query.v1).
//
// Its flows (Flows) use the hub's transit service: device registration,
// pricing and the deny list.
func Bundle() demo.Bundle {
	return demo.Bundle{
		Name:    Name,
		Channel: "transit",
		New:     func() sdk.Plugin { return New() },
		Merchants: []demo.Merchant{
			{ID: "M-CITYBUS", Name: "City Bus", MCC: "4131", FeeRateBps: 0},
			{ID: "M-METRO", Name: "Metro", MCC: "4111", FeeRateBps: 0},
		},
		Flows: Flows(),
	}
}

// Flows are the transit demo flows: an online tap, an offline batch upload
// replayed without a second charge, a lost card reaching the validators'
// deny list, and offline rides into debt recovered by a top-up.
func Flows() []demo.Flow {
	return []demo.Flow{
		{Name: "transit: online tap", Run: onlineTapFlow},
		{Name: "transit: offline batch upload", Run: offlineUploadFlow},
		{Name: "transit: deny list update", Run: denylistFlow},
		{Name: "transit: offline rides into debt, recovered by a top-up", Run: debtFlow},
	}
}

// demoDeadline is the demo validators' online deadline: longer than a
// gate's 300 ms, as the demo shares its machine with the whole hub.
const demoDeadline = 2 * time.Second

// frontEnd asks the plugin where its validator front end listens.
func frontEnd(ctx context.Context, env demo.Env) (*sim.Client, Status, error) {
	replies, err := env.Send(ctx, Name, sdk.Message{Type: TypeStatusQuery, Payload: json.RawMessage(`{}`)})
	if err != nil {
		return nil, Status{}, fmt.Errorf("asking the transit plugin for its front end: %w", err)
	}
	var s Status
	if len(replies) != 1 || replies[0].Type != TypeStatus || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" {
		return nil, Status{}, fmt.Errorf("the transit plugin answered its status with %+v", replies)
	}
	return sim.NewClient("http://"+s.Listen, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}), s, nil
}

// registerDevice registers a validator with the hub, which issues its key.
func registerDevice(ctx context.Context, env demo.Env, d sim.Device) ([]byte, error) {
	var out struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := env.API(ctx, http.MethodPost, "/v1/transit/devices", d, &out); err != nil {
		return nil, fmt.Errorf("registering validator %s: %w", d.ID, err)
	}
	key, err := hex.DecodeString(out.Key)
	if err != nil || len(key) != tap.KeySize {
		return nil, fmt.Errorf("the hub issued validator %s a key that is not %d bytes in hex", d.ID, tap.KeySize)
	}
	return key, nil
}

// demoDevice finds the plugin's front end and registers d with the hub.
func demoDevice(ctx context.Context, env demo.Env, d sim.Device) (*sim.Client, []byte, error) {
	client, _, err := frontEnd(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	key, err := registerDevice(ctx, env, d)
	if err != nil {
		return nil, nil, err
	}
	return client, key, nil
}

func demoValidator(ctx context.Context, env demo.Env, d sim.Device, stops []string) (*sim.Validator, *sim.Client, error) {
	client, key, err := demoDevice(ctx, env, d)
	if err != nil {
		return nil, nil, err
	}
	v, err := sim.NewValidator(sim.Config{Device: d, Key: key, Stops: stops, Client: client, Deadline: demoDeadline})
	if err != nil {
		return nil, nil, err
	}
	return v, client, v.PollDenylist(ctx, 0)
}

// offlineTaps are n taps-on of card that d made offline at stop, the first
// at from and the others every apart, numbered from 1 and signed with key.
func offlineTaps(key []byte, d sim.Device, card, stop string, from time.Time, every time.Duration, n int) ([]tap.Tap, error) {
	taps := make([]tap.Tap, n)
	for i := range taps {
		taps[i] = tap.Tap{Device: d.ID, Seq: int64(i + 1), Card: card, At: from.Add(time.Duration(i) * every),
			Kind: tap.On, Route: d.Route, Stop: stop, Offline: true}
		var err error
		if taps[i].MAC, err = tap.Sign(key, taps[i]); err != nil {
			return nil, err
		}
	}
	return taps, nil
}

func cardBalance(ctx context.Context, env demo.Env, card string) (int64, error) {
	var c struct {
		Balance int64 `json:"balance"`
	}
	if err := env.API(ctx, http.MethodGet, "/v1/cards/"+card, nil, &c); err != nil {
		return 0, fmt.Errorf("reading card %s: %w", card, err)
	}
	return c.Balance, nil
}

func onlineTapFlow(ctx context.Context, env demo.Env) error {
	v, _, err := demoValidator(ctx, env, sim.Device{ID: "DEMO-BUS-1", Operator: "city-bus", Mode: "bus", Route: "1"}, []string{"S01"})
	if err != nil {
		return err
	}
	card := env.Card("alice")
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	d := v.Tap(ctx, card)
	if !d.Online {
		return fmt.Errorf("no online answer from the hub within %s: %s", demoDeadline, d.Reason)
	}
	if d.Result.Status != StatusCharged || d.Result.Fare == nil {
		return fmt.Errorf("alice's tap on bus route 1 was answered %+v", d.Result)
	}
	env.Logf("alice taps on bus route 1 (validator %s, tap %d): %s, fare %s, transfer %s",
		v.Device().ID, d.Seq, d.Result.Status, demo.Yuan(*d.Result.Fare), d.Result.Transfer)
	after, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	if after != before-*d.Result.Fare {
		return fmt.Errorf("alice's card held %s and holds %s after a fare of %s", demo.Yuan(before), demo.Yuan(after), demo.Yuan(*d.Result.Fare))
	}
	env.Logf("alice's card: %s before, %s after", demo.Yuan(before), demo.Yuan(after))
	return nil
}

func offlineUploadFlow(ctx context.Context, env demo.Env) error {
	d := sim.Device{ID: "DEMO-METRO-1", Operator: "metro", Mode: "metro", Route: "metro"}
	client, key, err := demoDevice(ctx, env, d)
	if err != nil {
		return err
	}
	card := env.Card("alice")
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	// The gate's link was down: it let alice through three times on its
	// own, signed the taps as offline and kept them.
	taps, err := offlineTaps(key, d, card, "M01", time.Now().UTC().Add(-time.Hour), 20*time.Minute, 3)
	if err != nil {
		return err
	}
	first, err := client.Upload(ctx, taps)
	if err != nil {
		return fmt.Errorf("uploading 3 offline taps: %w", err)
	}
	var fares int64
	for i, r := range first.Results {
		if r.Status != StatusCharged || r.Fare == nil {
			return fmt.Errorf("offline tap %d was answered %+v", i+1, r)
		}
		fares += *r.Fare
	}
	after, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	if after != before-fares {
		return fmt.Errorf("alice's card held %s and holds %s after fares of %s", demo.Yuan(before), demo.Yuan(after), demo.Yuan(fares))
	}
	env.Logf("metro gate %s uploads 3 offline taps: all charged, %s in all", d.ID, demo.Yuan(fares))

	// The same upload again, as after a lost answer: duplicates, no money.
	again, err := client.Upload(ctx, taps)
	if err != nil {
		return fmt.Errorf("uploading the taps again: %w", err)
	}
	for i, r := range again.Results {
		if r.Status != StatusDuplicate {
			return fmt.Errorf("tap %d uploaded again was answered %s, not duplicate", i+1, r.Status)
		}
	}
	if now, err := cardBalance(ctx, env, card); err != nil || now != after {
		return fmt.Errorf("the repeated upload moved money: alice's card holds %s, was %s (%v)", demo.Yuan(now), demo.Yuan(after), err)
	}
	env.Logf("the same upload again: 3 duplicates, nothing charged twice")
	return nil
}

func denylistFlow(ctx context.Context, env demo.Env) error {
	client, s, err := frontEnd(ctx, env)
	if err != nil {
		return err
	}
	// The hub's push: the plugin fetches whatever changed since its version.
	payload, err := json.Marshal(denylistChanged{Version: s.DenylistVersion + 1})
	if err != nil {
		return err
	}
	replies, err := env.Send(ctx, Name, sdk.Message{Type: TypeDenylistChanged, Payload: payload})
	if err != nil {
		return fmt.Errorf("announcing a deny list change: %w", err)
	}
	var info denylistInfo
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, &info) != nil {
		return fmt.Errorf("the transit plugin answered the announcement with %+v", replies)
	}
	full, err := client.Denylist(ctx, -1, 0)
	if err != nil {
		return err
	}
	carol := env.Card("carol")
	if !slices.Contains(full.Cards, carol) {
		return fmt.Errorf("carol's lost card is not on deny list version %d (%d cards)", full.Version, len(full.Cards))
	}
	env.Logf("deny list version %d, %d cards, carol's lost card among them", full.Version, len(full.Cards))
	v, _, err := demoValidator(ctx, env, sim.Device{ID: "DEMO-BUS-2", Operator: "city-bus", Mode: "bus", Route: "15"}, nil)
	if err != nil {
		return err
	}
	if d := v.Tap(ctx, carol); d.Allowed || d.Seq != 0 {
		return errors.New("a validator let carol's lost card through")
	}
	env.Logf("a bus validator refuses carol's card from its own list, without asking the hub")
	return nil
}

// debtFlow: bob (3.00 on his card) rides a bus twice while its validator is
// offline. The second fare takes his purse below zero (the first-ride
// risk), which puts his card on the deny list; his next top-up pays the
// debt first and takes the card off.
func debtFlow(ctx context.Context, env demo.Env) error {
	d := sim.Device{ID: "DEMO-BUS-3", Operator: "city-bus", Mode: "bus", Route: "1"}
	client, key, err := demoDevice(ctx, env, d)
	if err != nil {
		return err
	}
	bob := env.Card("bob")
	before, err := cardBalance(ctx, env, bob)
	if err != nil {
		return err
	}
	taps, err := offlineTaps(key, d, bob, "", time.Now().UTC().Add(-6*time.Hour), 3*time.Hour, 2)
	if err != nil {
		return err
	}
	up, err := client.Upload(ctx, taps)
	if err != nil {
		return fmt.Errorf("uploading bob's offline rides: %w", err)
	}
	for i, r := range up.Results {
		if r.Status != StatusCharged {
			return fmt.Errorf("bob's offline ride %d was answered %+v", i+1, r)
		}
	}
	owed, err := cardBalance(ctx, env, bob)
	if err != nil {
		return err
	}
	if owed >= 0 {
		return fmt.Errorf("bob's card holds %s after two offline rides from %s: no debt", demo.Yuan(owed), demo.Yuan(before))
	}
	if !onDenylist(ctx, env, bob) {
		return errors.New("bob's card, in debt, is not on the deny list")
	}
	env.Logf("bob rides twice offline with %s on his card: it now holds %s and is on the deny list", demo.Yuan(before), demo.Yuan(owed))
	if err := env.API(ctx, http.MethodPost, "/v1/cards/"+bob+"/topups",
		map[string]any{"amount": 1000, "currency": "CNY", "purse": "cash", "method": "cash"}, nil); err != nil {
		return fmt.Errorf("topping up bob's card: %w", err)
	}
	after, err := cardBalance(ctx, env, bob)
	if err != nil {
		return err
	}
	if after != owed+1000 {
		return fmt.Errorf("bob's card holds %s after a top-up of 10.00 CNY onto %s", demo.Yuan(after), demo.Yuan(owed))
	}
	if onDenylist(ctx, env, bob) {
		return errors.New("bob's card is still on the deny list after his debt was paid")
	}
	env.Logf("a top-up of 10.00 CNY pays the %s debt first: %s left, and the card is off the deny list", demo.Yuan(-owed), demo.Yuan(after))
	return nil
}

// onDenylist reads the hub's deny list and reports whether card is on it.
func onDenylist(ctx context.Context, env demo.Env, card string) bool {
	var list struct {
		Cards []string `json:"cards"`
	}
	if err := env.API(ctx, http.MethodGet, "/v1/transit/denylist", nil, &list); err != nil {
		return false
	}
	return slices.Contains(list.Cards, card)
}
