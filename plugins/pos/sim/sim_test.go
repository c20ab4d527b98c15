package sim_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// host is a minimal POS host: it signs terminals on and answers 0200 and
// 0400 as answer says, absent meaning no answer at all; hangUpEOF and
// hangUpRST as the code close the connection instead, with a FIN or a
// reset, as a host that dies mid-request does.
type host struct {
	ln     net.Listener
	tmk    cardcrypto.Key
	mu     sync.Mutex
	mak    cardcrypto.Key
	answer map[string]string // MTI → response code; absent: silent
	got    []string          // MTIs received
	wg     sync.WaitGroup
}

func startHost(t *testing.T, tmk cardcrypto.Key) *host {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &host{ln: ln, tmk: tmk, answer: map[string]string{"0800": "00"}}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				for {
					m, err := iso.Codec{}.ReadMessage(c)
					if err != nil {
						return
					}
					resp := h.respond(t, m)
					if h.hangUp(t, c, m) {
						return
					}
					if resp != nil {
						if err := (iso.Codec{}).WriteMessage(c, resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); h.wg.Wait() })
	return h
}

// Codes of host.answer that hang up instead of answering.
const (
	hangUpEOF = "EOF"
	hangUpRST = "RST"
)

// hangUp closes c, as answer says for m's MTI, and reports whether it did.
func (h *host) hangUp(t *testing.T, c net.Conn, m *iso8583.Message) bool {
	mti, _ := m.GetMTI()
	h.mu.Lock()
	how := h.answer[mti]
	h.mu.Unlock()
	switch how {
	case hangUpRST:
		// No linger: the close sends a reset, not a FIN.
		if err := c.(*net.TCPConn).SetLinger(0); err != nil {
			t.Error(err)
		}
	case hangUpEOF:
	default:
		return false
	}
	_ = c.Close()
	return true
}

func (h *host) set(mti, rc string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rc == "" {
		delete(h.answer, mti)
	} else {
		h.answer[mti] = rc
	}
}

func (h *host) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

func (h *host) respond(t *testing.T, m *iso8583.Message) *iso8583.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	mti, _ := m.GetMTI()
	h.got = append(h.got, mti)
	rc, ok := h.answer[mti]
	if !ok || rc == hangUpEOF || rc == hangUpRST {
		return nil
	}
	if mti == "0800" {
		h.mak = cardcrypto.Key{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF}
		pik := cardcrypto.AdjustOddParity(cardcrypto.Key{0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF})
		f62, err := cardcrypto.BuildSignOnKeys(h.tmk, cardcrypto.WorkingKeys{PIN: pik, MAC: h.mak})
		if err != nil {
			t.Error(err)
			return nil
		}
		resp, err := iso.NewSignOnResponse(m, rc, "000001", time.Now(), f62)
		if err != nil {
			t.Error(err)
		}
		return resp
	}
	if err := iso.VerifyMAC(m, iso.MACECB, h.mak); err != nil {
		t.Errorf("%s: %v", mti, err)
	}
	resp, err := iso.NewResponse(m, rc)
	if err != nil {
		t.Error(err)
		return nil
	}
	if err := iso.SetMAC(resp, iso.MACECB, h.mak); err != nil {
		t.Error(err)
	}
	return resp
}

// TestTimeoutKeepsTheReversal: a purchase without an answer leaves a
// reversal, which goes before the next transaction; until the host answers
// it, no new transaction is sent.
func TestTimeoutKeepsTheReversal(t *testing.T) {
	tmk, _ := cardcrypto.ParseKey("0123456789ABCDEFFEDCBA9876543210")
	h := startHost(t, tmk)
	term, err := sim.New(sim.Config{Addr: h.ln.Addr().String(), TerminalID: "POS00001", MerchantID: "M-POS-SHOP     ", MasterKey: tmk, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	ctx := context.Background()
	if rc, err := term.SignOn(ctx); err != nil || rc != "00" {
		t.Fatalf("sign-on: %s %v", rc, err)
	}
	card := sim.Card{PAN: "3100990000000013", PIN: "123456"}
	if _, err := term.Purchase(ctx, card, 100); !errors.Is(err, sim.ErrTimeout) || !term.PendingReversal() {
		t.Fatalf("purchase: %v, reversal pending %v", err, term.PendingReversal())
	}
	// The host does not answer the reversal either: nothing new is sent.
	if _, err := term.Purchase(ctx, card, 200); !errors.Is(err, sim.ErrReversalPending) {
		t.Fatalf("next purchase: %v, want ErrReversalPending", err)
	}
	h.set("0400", "00")
	h.set("0200", "00")
	r, err := term.Purchase(ctx, card, 300)
	if err != nil || !r.Approved() || term.PendingReversal() || term.Reversals() != 1 {
		t.Fatalf("purchase: %+v %v", r, err)
	}
	want := []string{"0800", "0200", "0400", "0400", "0200"}
	if got := h.received(); len(got) != len(want) || got[4] != "0200" || got[2] != "0400" || got[3] != "0400" {
		t.Errorf("host received %v, want %v", got, want)
	}
	if tot := term.Totals(); tot.Domestic.DebitAmount != 300 || tot.Domestic.DebitCount != 1 {
		t.Errorf("totals %+v", tot)
	}
}

// TestLostConnectionKeepsTheReversal: a money request whose connection
// ends before its answer (the host closes it, or resets it) may have been
// applied, so the terminal keeps a reversal, as for a timeout; it goes
// first thing on the next transaction, over a new connection, and a host
// that does not answer it keeps it owed.
func TestLostConnectionKeepsTheReversal(t *testing.T) {
	tmk, _ := cardcrypto.ParseKey("0123456789ABCDEFFEDCBA9876543210")
	card := sim.Card{PAN: "3100990000000013", PIN: "123456"}
	ctx := context.Background()
	for _, tc := range []struct {
		name, how string
		do        func(*sim.Terminal) (sim.Result, error)
		mti       string
	}{
		{"purchase EOF", hangUpEOF, func(term *sim.Terminal) (sim.Result, error) { return term.Purchase(ctx, card, 963) }, "0200"},
		{"purchase reset", hangUpRST, func(term *sim.Terminal) (sim.Result, error) { return term.Purchase(ctx, card, 963) }, "0200"},
		{"pre-authorisation EOF", hangUpEOF, func(term *sim.Terminal) (sim.Result, error) { return term.PreAuth(ctx, card, 5000) }, "0100"},
		{"refund reset", hangUpRST, func(term *sim.Terminal) (sim.Result, error) {
			return term.Refund(ctx, sim.Result{Batch: "000001", STAN: "000001", RRN: "000000000001"}, card, 100)
		}, "0220"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHost(t, tmk)
			term, err := sim.New(sim.Config{Addr: h.ln.Addr().String(), TerminalID: "POS00001", MerchantID: "M-POS-SHOP     ", MasterKey: tmk, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer term.Close()
			if rc, err := term.SignOn(ctx); err != nil || rc != "00" {
				t.Fatalf("sign-on: %s %v", rc, err)
			}
			h.set(tc.mti, tc.how)
			if _, err := tc.do(term); !errors.Is(err, sim.ErrConnectionLost) || !term.PendingReversal() {
				t.Fatalf("%s: %v, reversal pending %v; want ErrConnectionLost and a reversal", tc.mti, err, term.PendingReversal())
			}
			// The host hangs up on the reversal too: still owed, nothing new sent.
			h.set("0400", tc.how)
			if _, err := term.Purchase(ctx, card, 200); !errors.Is(err, sim.ErrReversalPending) || !term.PendingReversal() {
				t.Fatalf("next purchase: %v, want ErrReversalPending", err)
			}
			h.set("0400", "00")
			h.set("0200", "00")
			r, err := term.Purchase(ctx, card, 300)
			if err != nil || !r.Approved() || term.PendingReversal() || term.Reversals() != 1 {
				t.Fatalf("purchase: %+v %v, reversal pending %v, answered %d", r, err, term.PendingReversal(), term.Reversals())
			}
			want := []string{"0800", tc.mti, "0400", "0400", "0200"}
			if got := h.received(); !slices.Equal(got, want) {
				t.Errorf("host received %v, want %v", got, want)
			}
			// The lost request counts in no total; the last purchase does.
			if tot := term.Totals(); tot.Domestic.DebitAmount != 300 || tot.Domestic.DebitCount != 1 || tot.Domestic.CreditCount != 0 {
				t.Errorf("totals %+v", tot)
			}
		})
	}
}

// TestReversalOfRefundThatStands: a refund without an answer is reversed;
// a host that applied it answers 12, and the refund then counts in the
// terminal's totals.
func TestReversalOfRefundThatStands(t *testing.T) {
	tmk, _ := cardcrypto.ParseKey("0123456789ABCDEFFEDCBA9876543210")
	h := startHost(t, tmk)
	term, err := sim.New(sim.Config{Addr: h.ln.Addr().String(), TerminalID: "POS00001", MerchantID: "M-POS-SHOP     ", MasterKey: tmk, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	ctx := context.Background()
	if rc, err := term.SignOn(ctx); err != nil || rc != "00" {
		t.Fatalf("sign-on: %s %v", rc, err)
	}
	card := sim.Card{PAN: "3100990000000013"}
	h.set("0220", hangUpEOF)
	if _, err := term.Refund(ctx, sim.Result{Batch: "000001", STAN: "000001", RRN: "000000000001"}, card, 700); !errors.Is(err, sim.ErrConnectionLost) {
		t.Fatalf("refund: %v", err)
	}
	h.set("0400", "12")
	if rc, err := term.SendReversal(ctx); err != nil || rc != "12" || term.PendingReversal() {
		t.Fatalf("reversal: %s %v", rc, err)
	}
	if tot := term.Totals(); tot.Domestic.CreditAmount != 700 || tot.Domestic.CreditCount != 1 {
		t.Errorf("totals %+v, want the refund of 700 counted", tot)
	}
}
