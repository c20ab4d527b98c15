// Command transit-sim runs a fleet of simulated validators against a
// transit plugin's front end, for trying it by hand:
//
//	transit-sim -front http://127.0.0.1:9400 -hub http://127.0.0.1:8080 -validators 200 -duration 30s
//
// Devices are registered with the hub's API (POST /v1/transit/devices, with
// the admin token in CITYCARD_TOKEN), which issues their keys. Without
// -hub, keys are made here and written to -keys-out as JSON
// ({"device": "hex key", …}) for a hub of your own to learn.
//
// At the end it uploads what is still queued, prints the counters as JSON
// on stdout, and exits 1 if any tap was not answered exactly once.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk/transit/tap"
)

func main() {
	front := flag.String("front", "http://127.0.0.1:9400", "the transit plugin's validator front end")
	hub := flag.String("hub", "", "the hub's API, to register the devices (token in CITYCARD_TOKEN); empty: make keys here")
	keysOut := flag.String("keys-out", "transit-sim-keys.json", "where to write the keys made here, without -hub")
	n := flag.Int("validators", 200, "how many validators")
	prefix := flag.String("prefix", "SIM", "device id prefix")
	duration := flag.Duration("duration", 30*time.Second, "how long to run")
	tapEvery := flag.Duration("tap-every", 500*time.Millisecond, "mean time between taps at one validator")
	uploadEvery := flag.Duration("upload-every", 5*time.Second, "time between uploads of a validator's offline queue")
	pollEvery := flag.Duration("poll-every", 30*time.Second, "time between deny list downloads")
	deadline := flag.Duration("deadline", sim.DefaultDeadline, "online deadline")
	cardList := flag.String("cards", "", "comma-separated card numbers riders tap (default: 100 made-up cards)")
	flag.Parse()

	cards := strings.Split(*cardList, ",")
	if *cardList == "" {
		cards = make([]string, 100)
		for i := range cards {
			cards[i] = fmt.Sprintf("31009900%08d", i)
		}
	}
	var keys func(context.Context, sim.Device) ([]byte, error)
	made := map[string]string{}
	var mu sync.Mutex
	if *hub != "" {
		keys = register(strings.TrimSuffix(*hub, "/"), os.Getenv("CITYCARD_TOKEN"))
	} else {
		keys = func(_ context.Context, d sim.Device) ([]byte, error) {
			k := make([]byte, tap.KeySize)
			if _, err := rand.Read(k); err != nil {
				return nil, err
			}
			mu.Lock()
			made[d.ID] = hex.EncodeToString(k)
			mu.Unlock()
			return k, nil
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fleet, err := sim.NewFleet(ctx, sim.FleetConfig{URL: *front, Validators: *n, Prefix: *prefix, Keys: keys, Cards: cards,
		TapEvery: *tapEvery, UploadEvery: *uploadEvery, PollEvery: *pollEvery, Deadline: *deadline, Seed: uint64(time.Now().UnixNano())})
	if err != nil {
		fail(err)
	}
	defer fleet.Close()
	if *hub == "" {
		raw, _ := json.MarshalIndent(made, "", "  ")
		if err := os.WriteFile(*keysOut, raw, 0o600); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "transit-sim: %d device keys written to %s\n", len(made), *keysOut)
	}
	if err := fleet.PollDenylist(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "transit-sim: deny list:", err)
	}
	fmt.Fprintf(os.Stderr, "transit-sim: %d validators against %s for %s\n", *n, *front, *duration)
	fleet.Run(ctx, *duration)
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drainErr := fleet.Drain(dctx)
	out, _ := json.MarshalIndent(fleet.Counts(), "", "  ")
	fmt.Println(string(out))
	if drainErr != nil {
		fail(drainErr)
	}
	if err := fleet.Check(); err != nil {
		fail(err)
	}
}

// register registers devices through the hub's API.
func register(base, token string) func(context.Context, sim.Device) ([]byte, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context, d sim.Device) ([]byte, error) {
		body, _ := json.Marshal(d)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/transit/devices", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", "transit-sim-device-"+d.ID)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out struct {
			Key    string `json:"key"`
			Detail string `json:"detail"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("the hub answered %s: %s", resp.Status, out.Detail)
		}
		return hex.DecodeString(out.Key)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "transit-sim:", err)
	os.Exit(1)
}
