package wiring_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	possim "github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

const (
	faultTerminal = "TPOSF001"
	faultMerchant = "M-POS-FAULT"
)

// killPoint is when killDialer kills the POS plugin during an armed
// request.
type killPoint int

const (
	killNever    killPoint = iota
	killAnswered           // the plugin's answer has arrived: the hub applied the request
	killSent               // the request is written: the kill races the hub's commit
)

// killDialer dials the POS plugin over real TCP for the terminal, and,
// once armed, SIGKILLs the plugin process at its kill point of the next
// request; the terminal then reads what the dead connection gives (EOF or
// a reset), never the answer.
type killDialer struct {
	kill func()

	mu   sync.Mutex
	at   killPoint
	sent []byte // the last frame the terminal wrote
}

func (d *killDialer) arm(at killPoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = at
}

// take disarms the dialer if it was armed for at.
func (d *killDialer) take(at killPoint) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at != at {
		return false
	}
	d.at = killNever
	return true
}

func (d *killDialer) lastSent() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.sent...)
}

func (d *killDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &killConn{Conn: c, d: d}, nil
}

type killConn struct {
	net.Conn
	d *killDialer
}

func (c *killConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	c.d.sent = append(c.d.sent[:0], b...)
	c.d.mu.Unlock()
	n, err := c.Conn.Write(b)
	if err == nil && c.d.take(killSent) {
		c.d.kill()
	}
	return n, err
}

func (c *killConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.d.take(killAnswered) {
		// The answer came, so the hub has committed: the plugin dies
		// before the terminal sees a byte of it, and the terminal gets
		// what the connection of a dead process gives.
		c.d.kill()
		drain := make([]byte, 4096)
		for {
			if _, err := c.Conn.Read(drain); err != nil {
				return 0, err
			}
		}
	}
	return n, err
}

// posFaultHub is a hub running the real POS plugin subprocess on a fixed
// port (so a restarted plugin listens where the terminal dials), a card
// with its PIN, and a terminal simulator signed on through killDialer.
type posFaultHub struct {
	*pluginHub
	term *possim.Terminal
	dial *killDialer
	pin  string
}

func startPOSFaultHub(t *testing.T, st store.Store) *posFaultHub {
	t.Helper()
	t.Cleanup(pin.SetCostForTesting(1, 8))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	posCfg, _ := json.Marshal(map[string]any{"listen": addr, "city_bins": []string{cardno.DefaultPrefix},
		"terminals": map[string]any{faultTerminal: map[string]any{"merchant": faultMerchant, "master_key": posMasterKey}}})
	posBin, posSum := testPlugin(t, "github.com/citycard/citycard/plugins/pos/cmd/citycard-plugin-pos")
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
		Ledger:     ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins:    []pluginhost.Spec{{Name: "pos", Path: posBin, SHA256: posSum, Channel: "retail", Config: posCfg}},
		PluginHost: pluginhost.Options{RestartBackoff: pluginhost.Backoff{Initial: 50 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c.must("POST", "/v1/merchants", map[string]any{"id": faultMerchant, "name": "Shop", "mcc": "5411", "settlement_account": "1"}, 201)
	c.must("POST", "/v1/terminals", map[string]any{"id": faultTerminal, "merchant": faultMerchant}, 201)
	card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Zhao", "id_type": "passport", "id_number": "F1"},
		"pin": "123456"}, 201)["number"].(string)
	c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 10000, "currency": "CNY"}, 201)
	h := &posFaultHub{pluginHub: &pluginHub{app: app, c: c, card: card, st: st}, pin: "123456"}
	h.dial = &killDialer{kill: func() { h.killPlugin(t) }}
	master, _ := cardcrypto.ParseKey(posMasterKey)
	h.term, err = possim.New(possim.Config{Addr: addr, TerminalID: faultTerminal,
		MerchantID: faultMerchant + strings.Repeat(" ", 15-len(faultMerchant)), MasterKey: master,
		Timeout: 5 * time.Second, Dialer: h.dial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.term.Close() })
	h.signOn(t)
	return h
}

// posPID is the running POS plugin's process id, 0 when none runs.
func (h *posFaultHub) posPID() int {
	for _, p := range h.app.Plugins() {
		if p.Name == "pos" && p.State == string(pluginhost.StateRunning) {
			return p.PID
		}
	}
	return 0
}

// killPlugin SIGKILLs the POS plugin process and waits until the hub runs
// a new one.
func (h *posFaultHub) killPlugin(t *testing.T) {
	pid := h.posPID()
	if pid == 0 {
		t.Error("no POS plugin process to kill")
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Error(err)
	}
}

// awaitRestart waits until a POS plugin other than pid runs.
func (h *posFaultHub) awaitRestart(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p := h.posPID(); p != 0 && p != pid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not restart the POS plugin: %+v", h.app.Plugins())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signOn signs the terminal on, retrying while a restarted plugin is not
// listening yet: the plugin lost the session keys with its process.
func (h *posFaultHub) signOn(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rc, err := h.term.SignOn(context.Background())
		if err == nil && rc == "00" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-on: %q %v", rc, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ledgerOf counts the terminal's payments of amount in the ledger and,
// for each, the reversals of it.
func (h *posFaultHub) ledgerOf(t *testing.T, amount int64) (payments, reversals int) {
	t.Helper()
	paid := map[int64]bool{}
	var revs []int64
	err := h.st.Batches(context.Background(), func(_ store.BatchRecord, ts []store.Transfer) error {
		for _, tr := range ts {
			switch {
			case tr.Kind == store.TransferPayment && tr.Terminal == faultTerminal && tr.Card == h.card && tr.Amount == amount:
				paid[tr.ID] = true
			case tr.Kind == store.TransferReversal:
				revs = append(revs, tr.Ref)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range revs {
		if paid[ref] {
			reversals++
		}
	}
	return len(paid), reversals
}

// TestPOSPluginKilledMidPurchase reproduces a purchase charged while its
// terminal never learnt it: the POS plugin is SIGKILLed mid-purchase,
// once after the hub committed it (the plugin's answer on its way) and
// once as soon as the request left the terminal (racing the hub). The
// terminal gets EOF or a reset, keeps a reversal, signs on to the plugin
// the hub restarted and sends it. The card then holds exactly what it did
// before, the ledger has the purchase and its reversal once each (or
// neither), it verifies, and the reversal sent again, even across another
// restart, changes nothing.
func TestPOSPluginKilledMidPurchase(t *testing.T) {
	for _, tc := range []struct {
		name      string
		at        killPoint
		committed bool // the hub must have committed the purchase
	}{
		{"after the hub committed", killAnswered, true},
		{"as the request left the terminal", killSent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
				h := startPOSFaultHub(t, st)
				ctx := context.Background()
				card := possim.Card{PAN: h.card, PIN: h.pin}
				// An ordinary purchase first: the terminal and plugin work.
				if r, err := h.term.Purchase(ctx, card, 100); err != nil || r.RC != "00" {
					t.Fatalf("first purchase: %+v %v", r, err)
				}
				before := h.balance()
				pid := h.posPID()

				const amount = 963
				h.dial.arm(tc.at)
				_, err := h.term.Purchase(ctx, card, amount)
				if !errors.Is(err, possim.ErrConnectionLost) {
					t.Fatalf("purchase with the plugin killed: %v, want the connection lost", err)
				}
				if !h.term.PendingReversal() {
					t.Fatal("the terminal owes no reversal for a purchase it got no answer to")
				}
				orig, derr := iso.DecodeFrame(h.dial.lastSent())
				if derr != nil {
					t.Fatal(derr)
				}
				if mti, _ := orig.GetMTI(); mti != "0200" {
					t.Fatalf("the last frame sent is a %s, want the purchase", mti)
				}
				h.awaitRestart(t, pid)
				n, _ := h.ledgerOf(t, amount)
				if tc.committed && n != 1 {
					t.Fatalf("the plugin answered, yet the ledger holds %d purchases of %d", n, amount)
				}
				t.Logf("at the kill the hub had committed %d purchase(s) of %d", n, amount)

				// The restarted plugin knows nothing of the terminal: it signs
				// on again, then sends the reversal it owes.
				h.signOn(t)
				if rc, err := h.term.SendReversal(ctx); err != nil || rc != "00" {
					t.Fatalf("reversal after the restart: %q %v, want 00", rc, err)
				}
				if h.term.PendingReversal() {
					t.Fatal("the reversal is still owed after its 00")
				}
				check := func(when string) {
					t.Helper()
					if b := h.balance(); b != before {
						t.Fatalf("%s: the card holds %v, want %v as before the purchase", when, b, before)
					}
					p, r := h.ledgerOf(t, amount)
					if p != r || p > 1 {
						t.Fatalf("%s: the ledger holds %d purchases of %d and %d reversals of them, want one each or neither", when, p, amount, r)
					}
					if tc.committed && p != 1 {
						t.Fatalf("%s: the committed purchase is gone from the ledger", when)
					}
					h.verify(t)
				}
				check("after the reversal")

				// The same 0400 again, to the same plugin: answered as before.
				again, err := iso.NewReversal(orig, iso.ReverseTimeout)
				if err != nil {
					t.Fatal(err)
				}
				resend := func() string {
					t.Helper()
					resp, err := h.term.Exchange(ctx, again, true)
					if err != nil {
						t.Fatalf("resent reversal: %v", err)
					}
					rc, _ := resp.GetString(iso.FieldResponseCode)
					return rc
				}
				if rc := resend(); rc != "00" {
					t.Fatalf("resent reversal: %s, want 00", rc)
				}
				check("after the reversal resent")
				// And after another restart, which forgets it: the hub's
				// ledger, under the reversal's own key, answers it once more.
				pid = h.posPID()
				h.killPlugin(t)
				h.awaitRestart(t, pid)
				h.signOn(t)
				if rc := resend(); rc != "00" {
					t.Fatalf("reversal resent after another restart: %s, want 00", rc)
				}
				check("after the reversal resent across a restart")

				// The terminal goes on working.
				if r, err := h.term.Purchase(ctx, card, 200); err != nil || r.RC != "00" {
					t.Fatalf("purchase after the recovery: %+v %v", r, err)
				}
				if b := h.balance(); b != before-200 {
					t.Fatalf("the card holds %v after a purchase of 200, want %v", b, before-200)
				}
				h.verify(t)
			})
		})
	}
}
