package unionpay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/plugins/pos/iso"
	"github.com/moov-io/iso8583"
	iso8583errors "github.com/moov-io/iso8583/errors"
)

// Response codes (field 39) and reversal reasons the link uses itself.
const (
	rcApproved    = "00"
	rcInvalidCard = "14"
	rcTimeout     = "68" // the answer came too late, or never
	rcMACError    = "A0"
	reasonTimeout = iso.ReverseTimeout  // 98: no response from the switch
	reasonMAC     = iso.ReverseMACError // A0: the response's MAC failed
	reasonCancel  = iso.ReverseOther    // 06: the hub cancelled the payment
	batch         = "000001"
)

var (
	errLinkDown   = errors.New("unionpay: the link to the switch is down")
	errNoResponse = errors.New("unionpay: no response from the switch")
	errLinkLost   = errors.New("unionpay: the link dropped before the switch answered")
)

// link is the persistent connection to the UnionPay switch: it connects,
// signs on (receiving the working keys under the master key), echoes to
// keep the line up, reconnects with backoff when it drops, matches
// responses to requests by MTI and STAN, and sends the journal's queued
// reversals until the switch acknowledges each one.
//
// It reads and writes frames with plugins/pos/iso's Codec, the framing it
// also offers moov-io/iso8583-connection; the link keeps its own loop
// rather than that package's because it must treat every unanswered
// financial request as a reversal to queue and log responses for unknown
// STANs itself.
type link struct {
	s   settings
	j   *journal
	log *slog.Logger
	env iso.Envelope

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	mu      sync.Mutex
	conn    net.Conn // nil when not connected
	mak     cardcrypto.Key
	up      bool          // signed on
	upCh    chan struct{} // closed while up
	lastErr error
	pending map[string]chan *iso8583.Message // by response MTI and STAN

	wmu sync.Mutex // one frame at a time on the wire
}

func newLink(s settings, j *journal, log *slog.Logger) *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{s: s, j: j, log: log, env: iso.DefaultEnvelope(0, 1), ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), upCh: make(chan struct{}), pending: map[string]chan *iso8583.Message{},
		lastErr: errors.New("not connected yet")}
}

func (l *link) start() {
	l.wg.Add(2)
	go l.run()
	go l.pump()
}

func (l *link) stop() {
	l.cancel()
	l.mu.Lock()
	if l.conn != nil {
		_ = l.conn.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// health returns nil while signed on, else why not.
func (l *link) health() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up {
		return nil
	}
	return fmt.Errorf("%w: %v", errLinkDown, l.lastErr)
}

// waitUp waits up to d for the link to be signed on.
func (l *link) waitUp(ctx context.Context, d time.Duration) bool {
	l.mu.Lock()
	ch := l.upCh
	l.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-l.ctx.Done():
	}
	return false
}

func (l *link) kickPump() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *link) setErr(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// run keeps the link up until stop.
func (l *link) run() {
	defer l.wg.Done()
	const first = 50 * time.Millisecond
	backoff := first
	for l.ctx.Err() == nil {
		d := net.Dialer{Timeout: l.s.responseTimeout}
		c, err := d.DialContext(l.ctx, "tcp", l.s.addr)
		if err != nil {
			l.setErr(err)
			l.log.Warn("cannot reach the switch", "addr", l.s.addr, "err", err, "retry_in", backoff)
		} else if l.serve(c) {
			backoff = first
		}
		// Jitter keeps a fleet of links from reconnecting in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, l.s.reconnectMax)
	}
}

// serve runs one connection: sign-on, then echoes until it fails. It
// reports whether the sign-on succeeded.
func (l *link) serve(c net.Conn) bool {
	readerDone := make(chan struct{})
	l.mu.Lock()
	l.conn = c
	l.mu.Unlock()
	go func() {
		defer close(readerDone)
		l.read(c)
	}()
	defer func() {
		_ = c.Close()
		<-readerDone
		l.mu.Lock()
		l.conn, l.mak = nil, nil
		if l.up {
			l.up = false
			l.upCh = make(chan struct{})
		}
		for k, ch := range l.pending {
			close(ch)
			delete(l.pending, k)
		}
		l.mu.Unlock()
	}()
	if err := l.signOn(); err != nil {
		l.setErr(err)
		l.log.Warn("sign-on failed", "addr", l.s.addr, "err", err)
		return false
	}
	l.mu.Lock()
	l.up, l.lastErr = true, nil
	close(l.upCh)
	l.mu.Unlock()
	l.log.Info("signed on to the switch", "addr", l.s.addr)
	l.kickPump()
	t := time.NewTicker(l.s.echoInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return true
		case <-readerDone:
			l.setErr(errLinkLost)
			l.log.Warn("the link to the switch dropped", "addr", l.s.addr)
			return true
		case <-t.C:
			if err := l.echo(); err != nil {
				l.setErr(err)
				l.log.Warn("echo test failed; reconnecting", "err", err)
				return true
			}
		}
	}
}

// read hands each response to the request waiting for it.
func (l *link) read(c net.Conn) {
	for {
		m, err := iso.Codec{}.ReadMessage(c)
		if err != nil {
			var ue *iso8583errors.UnpackError
			if errors.As(err, &ue) {
				l.log.Warn("undecodable frame from the switch", "err", err)
				continue
			}
			return
		}
		if m == nil {
			continue // keep-alive frame
		}
		mti, _ := m.GetMTI()
		stan, _ := m.GetString(iso.FieldSTAN)
		key := mti + "/" + stan
		l.mu.Lock()
		ch, ok := l.pending[key]
		delete(l.pending, key)
		l.mu.Unlock()
		if !ok {
			// Late (after a timeout, and so already reversed) or never asked for.
			l.log.Warn("dropped a response for an unknown STAN", "mti", mti, "stan", stan)
			continue
		}
		ch <- m
	}
}

// exchange sends m and waits for its response. sent reports whether the
// request may have reached the switch: when it has and err is set, the
// outcome is unknown.
func (l *link) exchange(m *iso8583.Message, signingOn bool) (resp *iso8583.Message, sent bool, err error) {
	mti, _ := m.GetMTI()
	stan, _ := m.GetString(iso.FieldSTAN)
	rmti, err := iso.ResponseMTI(mti)
	if err != nil {
		return nil, false, err
	}
	frame, err := iso.EncodeFrame(m)
	if err != nil {
		return nil, false, err
	}
	key := rmti + "/" + stan
	ch := make(chan *iso8583.Message, 1)
	l.mu.Lock()
	c := l.conn
	if c == nil || (!l.up && !signingOn) {
		l.mu.Unlock()
		return nil, false, errLinkDown
	}
	l.pending[key] = ch
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		if l.pending[key] == ch {
			delete(l.pending, key)
		}
		l.mu.Unlock()
	}
	l.wmu.Lock()
	_ = c.SetWriteDeadline(time.Now().Add(l.s.responseTimeout))
	_, err = c.Write(frame)
	l.wmu.Unlock()
	if err != nil {
		forget()
		_ = c.Close()
		return nil, true, fmt.Errorf("unionpay: sending %s: %w", mti, err)
	}
	t := time.NewTimer(l.s.responseTimeout)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, true, errLinkLost
		}
		return r, true, nil
	case <-t.C:
		forget()
		return nil, true, errNoResponse
	case <-l.ctx.Done():
		forget()
		return nil, true, errLinkLost
	}
}

func (l *link) terminal() iso.Terminal {
	return iso.Terminal{Envelope: l.env, TerminalID: l.s.terminal, MerchantID: l.s.merchant}
}

// signOn asks for working keys and checks them against their check values.
func (l *link) signOn() error {
	m, err := iso.NewSignOn(l.terminal(), l.j.nextSTAN(), batch, time.Now(), iso.KeysDouble, "001")
	if err != nil {
		return err
	}
	if err := m.Field(iso.FieldAcquirerID, l.s.acquirer); err != nil {
		return err
	}
	resp, _, err := l.exchange(m, true)
	if err != nil {
		return err
	}
	if rc, _ := resp.GetString(iso.FieldResponseCode); rc != rcApproved {
		return fmt.Errorf("unionpay: sign-on refused with %s", rc)
	}
	f62, err := resp.GetBytes(iso.FieldReserved62)
	if err != nil {
		return fmt.Errorf("unionpay: sign-on response without keys: %w", err)
	}
	keys, err := cardcrypto.ParseSignOnKeys(l.s.tmk, f62)
	if err != nil {
		return fmt.Errorf("unionpay: sign-on keys: %w", err)
	}
	// PIN blocks are passed through as the hub enciphered them (README),
	// so the switch's PIN key is not kept.
	keys.PIN.Wipe()
	l.mu.Lock()
	l.mak = keys.MAC
	l.mu.Unlock()
	return nil
}

// echo is the keep-alive: an 0800 with network code 301.
func (l *link) echo() error {
	m, err := iso.NewSignOn(l.terminal(), l.j.nextSTAN(), batch, time.Now(), iso.KeyScheme(iso.NetEcho), "001")
	if err != nil {
		return err
	}
	resp, _, err := l.exchange(m, false)
	if err != nil {
		return err
	}
	if rc, _ := resp.GetString(iso.FieldResponseCode); rc != rcApproved {
		return fmt.Errorf("unionpay: echo answered %s", rc)
	}
	return nil
}

func (l *link) macKey() cardcrypto.Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mak
}

// authorization is one authorisation request as the link sends it.
type authorization struct {
	key      string
	pan      cardcrypto.PAN
	expiry   string
	amount   int64
	currency string // field 49, numeric
	merchant string
	terminal string
	pinBlock []byte
	track2   string
}

// errNotSent marks a request that never left the plugin: the hub may
// retry it.
var errNotSent = errors.New("unionpay: not sent")

// authorize sends one 0200 and returns the switch's answer. A request the
// switch may have received but did not answer in time is declined 68 and
// its reversal queued before authorize returns. An error wrapping
// errNotSent means nothing reached the switch and nothing was recorded.
func (l *link) authorize(a authorization) (Authorization, error) {
	if !l.waitUp(l.ctx, l.s.responseTimeout) {
		return Authorization{}, fmt.Errorf("%w: %w", errNotSent, l.health())
	}
	mak := l.macKey()
	if mak == nil {
		return Authorization{}, fmt.Errorf("%w: %w", errNotSent, errLinkDown)
	}
	now := time.Now()
	stan := l.j.nextSTAN()
	entry := iso.EntryManualNoPIN
	switch {
	case a.track2 != "" && a.pinBlock != nil:
		entry = iso.EntrySwipePIN
	case a.track2 != "":
		entry = iso.EntrySwipeNoPIN
	case a.pinBlock != nil:
		entry = "011" // manual, PIN entered
	}
	m, err := iso.NewPurchase(iso.Request{
		Terminal: iso.Terminal{Envelope: l.env, TerminalID: a.terminal, MerchantID: a.merchant},
		STAN:     stan, Batch: batch, At: now,
		Card: iso.Card{PAN: a.pan, Expiry: a.expiry, Track2: a.track2, EntryMode: entry,
			PINBlock: a.pinBlock, TripleDESPIN: a.pinBlock != nil},
		Amount: a.amount, Currency: a.currency,
	})
	if err == nil {
		err = m.Field(iso.FieldAcquirerID, l.s.acquirer)
	}
	if err == nil {
		err = iso.SetMAC(m, l.s.mac, mak)
	}
	if err != nil {
		return Authorization{}, fmt.Errorf("%w: building the request: %w", errNotSent, err)
	}
	o := original{Key: a.key, STAN: stan, Date: now.Format("0102"), Amount: a.amount, Currency: a.currency,
		Terminal: a.terminal, Merchant: a.merchant, EntryMode: entry, MaskedPAN: a.pan.Masked()}
	// Recorded before it leaves, so a crash while waiting still ends in a reversal.
	if err := l.j.write(record{Op: "sent", Key: a.key, Orig: &o}); err != nil {
		return Authorization{}, fmt.Errorf("%w: %w", errNotSent, err)
	}
	resp, sent, err := l.exchange(m, false)
	if err != nil && !sent {
		// Never on the wire: forget it rather than reverse it.
		ans := Authorization{Status: Declined, ResponseCode: rcTimeout, STAN: stan, MaskedPAN: o.MaskedPAN}
		if werr := l.j.write(record{Op: "answer", Key: a.key, Answer: &ans}); werr != nil {
			return Authorization{}, werr
		}
		l.log.Warn("authorisation not sent; declined", "stan", stan, "pan", a.pan, "err", err)
		return ans, nil
	}
	if err == nil {
		if verr := iso.VerifyMAC(resp, l.s.mac, mak); verr != nil {
			l.log.Warn("authorisation response failed its MAC; reversing", "stan", stan, "err", verr)
			return l.declineAndReverse(o, rcMACError, reasonMAC)
		}
	} else {
		l.log.Warn("no answer to an authorisation; declining and reversing", "stan", stan, "pan", a.pan, "err", err)
		return l.declineAndReverse(o, rcTimeout, reasonTimeout)
	}
	rc, _ := resp.GetString(iso.FieldResponseCode)
	ans := Authorization{Status: Declined, ResponseCode: rc, STAN: stan, MaskedPAN: o.MaskedPAN}
	ans.RRN, _ = resp.GetString(iso.FieldRRN)
	if rc == rcApproved {
		ans.Status = Approved
		ans.AuthCode, _ = resp.GetString(iso.FieldAuthCode)
	}
	if err := l.j.write(record{Op: "answer", Key: a.key, Answer: &ans}); err != nil {
		return Authorization{}, err
	}
	l.log.Info("authorisation", "stan", stan, "pan", a.pan, "amount", a.amount, "response_code", rc)
	return ans, nil
}

// declineAndReverse records a decline with rc and queues the reversal of o
// in one journal write, so the one is never kept without the other.
func (l *link) declineAndReverse(o original, rc, reason string) (Authorization, error) {
	ans := Authorization{Status: Declined, ResponseCode: rc, STAN: o.STAN, MaskedPAN: o.MaskedPAN}
	o.Reason = reason
	if err := l.j.write(record{Op: "answer", Key: o.Key, Answer: &ans}, record{Op: "queue", Key: o.Key, Orig: &o}); err != nil {
		return Authorization{}, err
	}
	l.kickPump()
	return ans, nil
}

// pump sends queued reversals, oldest first, whenever the link is up, until
// the switch acknowledges each one.
func (l *link) pump() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.kick:
		case <-t.C:
		}
		if l.health() != nil {
			continue
		}
		for _, o := range l.j.pending() {
			if err := l.reverse(o); err != nil {
				l.log.Warn("reversal not acknowledged; will resend", "stan", o.STAN, "err", err)
				break
			}
		}
	}
}

// reverse sends one 0400 and records the switch's acknowledgement.
func (l *link) reverse(o original) error {
	mak := l.macKey()
	if mak == nil {
		return errLinkDown
	}
	m := iso.NewMessage("0400", l.env)
	f60, err := iso.Field60{MessageType: iso.TypePurchase, Batch: batch}.Encode()
	if err != nil {
		return err
	}
	f61, err := iso.Original{Batch: batch, STAN: o.STAN, Date: o.Date}.Field61()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		id int
		v  string
	}{
		{iso.FieldProcessingCode, iso.ProcPurchase}, {iso.FieldAmount, fmt.Sprintf("%012d", o.Amount)},
		{iso.FieldSTAN, o.STAN}, {iso.FieldEntryMode, o.EntryMode}, {iso.FieldConditionCode, iso.CondNormal},
		{iso.FieldAcquirerID, l.s.acquirer}, {iso.FieldResponseCode, o.Reason}, {iso.FieldTerminalID, o.Terminal},
		{iso.FieldMerchantID, o.Merchant}, {iso.FieldCurrency, o.Currency}, {iso.FieldReserved60, f60},
		{iso.FieldOriginal, f61},
	} {
		if err := m.Field(f.id, f.v); err != nil {
			return err
		}
	}
	if err := iso.SetMAC(m, l.s.mac, mak); err != nil {
		return err
	}
	resp, _, err := l.exchange(m, false)
	if err != nil {
		return err
	}
	if err := iso.VerifyMAC(resp, l.s.mac, mak); err != nil {
		return err
	}
	rc, _ := resp.GetString(iso.FieldResponseCode)
	switch rc {
	case rcApproved, "12", "25":
		// 25: the switch never saw the original, so nothing stands to undo.
	default:
		return fmt.Errorf("unionpay: reversal answered %s", rc)
	}
	if err := l.j.write(record{Op: "acked", Key: o.Key}); err != nil {
		return err
	}
	l.log.Info("reversal acknowledged", "stan", o.STAN, "response_code", rc)
	return nil
}

func decodePINBlock(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return hex.DecodeString(s)
}
