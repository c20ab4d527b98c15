package unionpay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
	"github.com/moov-io/iso8583"
	iso8583errors "github.com/moov-io/iso8583/errors"
)

// Response codes (field 39) and reversal reasons the link uses itself.
const (
	rcApproved    = "00"
	rcInvalidTxn  = "12" // the original is not of a kind this can undo or complete
	rcInvalidCard = "14" // Luhn failure or unknown token
	rcNoOriginal  = "25" // no approved original under that key
	rcTimeout     = "68" // the answer came too late, or never
	rcPINError    = "99" // the PIN block does not decipher under the PIN zone key
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
// It reads and writes frames with sdk/pos/iso's Codec, the framing it
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
	pik     cardcrypto.Key // the session PIN key, from sign-on
	up      bool           // signed on
	upCh    chan struct{}  // closed while up
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
		l.conn, l.mak, l.pik = nil, nil, nil
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
	// PIN blocks are translated from the PIN zone key to this session's
	// PIN key before they go to the switch.
	l.mu.Lock()
	l.mak, l.pik = keys.MAC, keys.PIN
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

// sessionKeys returns the session's MAC and PIN keys, both from the same
// sign-on.
func (l *link) sessionKeys() (mak, pik cardcrypto.Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mak, l.pik
}

// request is one financial request as the link sends it.
type request struct {
	key string
	// o is what the journal keeps of it. transact sets its key, STAN and
	// date, unless resend says they are those of the request already sent.
	o      original
	resend bool
	// build makes the message for stan at the time at; pik is the
	// session's PIN key, under which a PIN block is enciphered.
	build func(stan string, at time.Time, pik cardcrypto.Key) (*iso8583.Message, error)
}

// errNotSent marks a request that never left the plugin: the hub may
// retry it.
var errNotSent = errors.New("unionpay: not sent")

// transact sends one financial request and returns the switch's answer.
// A purchase, pre-authorisation or completion the switch may have received
// but did not answer in time (or answered with a wrong MAC) is declined 68
// (A0) and its reversal queued before transact returns; a void, refund or
// cancellation is declined 68 (A0) with nothing recorded as its answer, so
// the hub's retry under the same key sends the same request (same STAN)
// again, which the switch applies once. An error wrapping errNotSent means
// nothing reached the switch.
func (l *link) transact(r request) (Authorization, error) {
	if !l.waitUp(l.ctx, l.s.responseTimeout) {
		return Authorization{}, fmt.Errorf("%w: %w", errNotSent, l.health())
	}
	mak, pik := l.sessionKeys()
	if mak == nil || pik == nil {
		return Authorization{}, fmt.Errorf("%w: %w", errNotSent, errLinkDown)
	}
	now := time.Now()
	o := r.o
	o.Key = r.key
	if !r.resend {
		o.STAN, o.Date = l.j.nextSTAN(), now.Format("0102")
	}
	m, err := r.build(o.STAN, now, pik)
	if err == nil {
		err = m.Field(iso.FieldAcquirerID, l.s.acquirer)
	}
	if err == nil {
		err = iso.SetMAC(m, l.s.mac, mak)
	}
	if err != nil {
		return Authorization{}, fmt.Errorf("%w: building the request: %w", errNotSent, err)
	}
	if !r.resend {
		// Recorded before it leaves, so a crash while waiting still ends in a reversal.
		if err := l.j.write(record{Op: "sent", Key: r.key, Orig: &o}); err != nil {
			return Authorization{}, fmt.Errorf("%w: %w", errNotSent, err)
		}
	}
	kind := o.kind()
	resp, sent, err := l.exchange(m, false)
	if err != nil && !sent {
		if resendable(kind) {
			// Journalled as sent: the retry sends it, under the same STAN.
			return Authorization{}, fmt.Errorf("%w: %w", errNotSent, err)
		}
		// Never on the wire: forget it rather than reverse it.
		ans := Authorization{Status: Declined, ResponseCode: rcTimeout, STAN: o.STAN, MaskedPAN: o.MaskedPAN}
		if werr := l.j.write(record{Op: "answer", Key: r.key, Answer: &ans}); werr != nil {
			return Authorization{}, werr
		}
		l.log.Warn("request not sent; declined", "kind", kind, "stan", o.STAN, "pan", o.MaskedPAN, "err", err)
		return ans, nil
	}
	if err == nil {
		if verr := iso.VerifyMAC(resp, l.s.mac, mak); verr != nil {
			l.log.Warn("response failed its MAC", "kind", kind, "stan", o.STAN, "err", verr)
			return l.unanswered(o, rcMACError, reasonMAC)
		}
	} else {
		l.log.Warn("no answer from the switch", "kind", kind, "stan", o.STAN, "pan", o.MaskedPAN, "err", err)
		return l.unanswered(o, rcTimeout, reasonTimeout)
	}
	rc, _ := resp.GetString(iso.FieldResponseCode)
	ans := Authorization{Status: Declined, ResponseCode: rc, STAN: o.STAN, MaskedPAN: o.MaskedPAN}
	ans.RRN, _ = resp.GetString(iso.FieldRRN)
	if rc == rcApproved {
		ans.Status = Approved
		ans.AuthCode, _ = resp.GetString(iso.FieldAuthCode)
		if kind == kindBalance {
			f54, _ := resp.GetString(iso.FieldBalance)
			b, err := iso.ParseBalance(f54)
			if err != nil {
				l.log.Warn("balance inquiry answered without a usable balance", "stan", o.STAN, "err", err)
			} else {
				ans.Balance = &b.Amount
			}
		}
	}
	if err := l.j.write(record{Op: "answer", Key: r.key, Answer: &ans}); err != nil {
		return Authorization{}, err
	}
	l.log.Info("answered", "kind", kind, "stan", o.STAN, "pan", o.MaskedPAN, "amount", o.Amount, "response_code", rc)
	return ans, nil
}

// unanswered settles a request sent whose answer never came, or came with
// a wrong MAC: a purchase, pre-authorisation or completion is declined and
// reversed; a balance inquiry is declined; a void, refund or cancellation
// is declined for now, with no answer recorded, to be sent again.
func (l *link) unanswered(o original, rc, reason string) (Authorization, error) {
	ans := Authorization{Status: Declined, ResponseCode: rc, STAN: o.STAN, MaskedPAN: o.MaskedPAN}
	switch kind := o.kind(); {
	case resendable(kind):
		return ans, nil
	case kind == kindBalance:
		if err := l.j.write(record{Op: "answer", Key: o.Key, Answer: &ans}); err != nil {
			return Authorization{}, err
		}
		return ans, nil
	default:
		return l.declineAndReverse(o, rc, reason)
	}
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
	proc, cond, msgType := o.Proc, o.Cond, o.MsgType
	if proc == "" {
		proc, cond, msgType = iso.ProcPurchase, iso.CondNormal, iso.TypePurchase
	}
	f60, err := iso.Field60{MessageType: msgType, Batch: batch}.Encode()
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
		{iso.FieldProcessingCode, proc}, {iso.FieldAmount, fmt.Sprintf("%012d", o.Amount)},
		{iso.FieldSTAN, o.STAN}, {iso.FieldEntryMode, o.EntryMode}, {iso.FieldConditionCode, cond},
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
