package pos_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// restart stops the plugin and starts a new one on the same address and
// hub double, as the hub does after the process died: the new plugin's
// journal knows nothing, and the hub double keeps every payment and
// idempotency key.
func (w *world) restart() {
	w.t.Helper()
	if err := w.h.Close(); err != nil {
		w.t.Fatal(err)
	}
	cfg := config()
	cfg["listen"] = w.addr
	w.p = pos.New()
	w.h = plugintest.Start(w.t, w.p, plugintest.WithHub(w.hub))
	if err := w.h.Configure(cfg); err != nil {
		w.t.Fatal(err)
	}
}

// TestReversalAfterRestart: a terminal whose purchase's answer was lost
// with the plugin (the connection closed under it) reverses it through
// the restarted plugin, which finds it at the hub by the key its terminal,
// batch and STAN derive: reversed once, a resent 0400 changes nothing, even
// across another restart. A purchase the hub never got has nothing to
// undo: 00.
func TestReversalAfterRestart(t *testing.T) {
	w := setup(t)
	// The plugin dies between the hub's answer and the terminal's: the
	// terminal's connection ends under its purchase.
	cut := &cutDialer{}
	term, err := sim.New(sim.Config{Addr: w.addr, TerminalID: term1, MerchantID: acceptor, MasterKey: key(t, tmkHex),
		Timeout: 5 * time.Second, Dialer: cut})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = term.Close() })
	if rc, err := term.SignOn(ctx(t)); err != nil || rc != "00" {
		t.Fatalf("sign-on: %s %v", rc, err)
	}
	cut.arm()
	if _, err := term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 963); !errors.Is(err, sim.ErrConnectionLost) || !term.PendingReversal() {
		t.Fatalf("purchase: %v, reversal owed %v", err, term.PendingReversal())
	}
	if got := w.bank.balance(alice); got != 50000-963 {
		t.Fatalf("the hub did not take the purchase: alice holds %d", got)
	}
	w.restart()
	// The restarted plugin has no session: the reversal is refused A0 and
	// stays owed until the terminal signs on again.
	if _, err := term.SendReversal(ctx(t)); err == nil || !term.PendingReversal() {
		t.Fatalf("reversal before sign-on: %v, owed %v", err, term.PendingReversal())
	}
	if rc, err := term.SignOn(ctx(t)); err != nil || rc != "00" {
		t.Fatalf("sign-on after the restart: %s %v", rc, err)
	}
	expect(t, "purchase after the reversal", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 100))
	if term.PendingReversal() || term.Reversals() != 1 || w.bank.reversals() != 1 || w.bank.balance(alice) != 50000-100 {
		t.Fatalf("owed %v, answered %d, hub reversals %d, alice %d", term.PendingReversal(), term.Reversals(), w.bank.reversals(), w.bank.balance(alice))
	}
	// The same 0400 again, after another restart: answered 00, nothing moves.
	rev, err := iso.NewReversal(cut.purchase, iso.ReverseTimeout)
	if err != nil {
		t.Fatal(err)
	}
	w.restart()
	term2 := w.signedOn(term1)
	if rc := exchange(t, term2, rev, true); rc != "00" {
		t.Errorf("reversal resent after another restart: %s, want 00", rc)
	}
	if w.bank.reversals() != 1 || w.bank.balance(alice) != 50000-100 {
		t.Errorf("hub reversals %d, alice %d", w.bank.reversals(), w.bank.balance(alice))
	}
	// A purchase the hub never got, reversed after a restart: 00, nothing
	// to undo; the original arriving afterwards is refused 94.
	for range 10 { // past the STANs the first terminal used in this batch
		term2.NextSTAN()
	}
	stan := term2.NextSTAN()
	never, _ := iso.NewReversal(purchaseMsg(t, term2, alice, 700, stan, "000001"), iso.ReverseTimeout)
	if rc := exchange(t, term2, never, true); rc != "00" {
		t.Errorf("reversal of a purchase the hub never got: %s, want 00", rc)
	}
	if rc := exchange(t, term2, purchaseMsg(t, term2, alice, 700, stan, "000001"), true); rc != "94" {
		t.Errorf("the original after its reversal: %s, want 94", rc)
	}
	if w.bank.reversals() != 1 || w.bank.balance(alice) != 50000-100 {
		t.Errorf("hub reversals %d, alice %d", w.bank.reversals(), w.bank.balance(alice))
	}
}

// cutDialer dials over real TCP; armed, it ends the connection as the
// answer to the next request arrives, unread, as a plugin that dies
// between the hub's answer and the terminal's does. It keeps the request
// it cut.
type cutDialer struct {
	mu       sync.Mutex
	armed    bool
	last     []byte
	purchase *iso8583.Message
}

func (d *cutDialer) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = true
}

func (d *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, d: d}, nil
}

type cutConn struct {
	net.Conn
	d *cutDialer
}

func (c *cutConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	c.d.last = append(c.d.last[:0], b...)
	c.d.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if n > 0 && c.d.armed {
		c.d.armed = false
		c.d.purchase, _ = iso.DecodeFrame(c.d.last)
		_ = c.Conn.Close()
		return 0, io.EOF
	}
	return n, err
}
