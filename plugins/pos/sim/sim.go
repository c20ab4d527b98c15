// Package sim is a POS terminal simulator for the pos plugin: it speaks
// the UnionPay-POS-style ISO 8583 of package iso over real TCP, as the
// city's terminals do. It holds its terminal master key, signs on for
// working keys (checking their check values), MACs every money message,
// enciphers PINs into ISO 9564 format 0 blocks, keeps its batch and its
// totals, and, when a request that moves money gets no answer it can
// accept (a timeout, a lost connection, a bad MAC), sends the reversal
// (0400) before its next transaction, as UnionPay terminals do.
package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// Errors of an exchange.
var (
	// ErrTimeout: no answer in time. For a money request the terminal
	// keeps a reversal and sends it before its next transaction.
	ErrTimeout = errors.New("sim: no answer from the host in time")
	// ErrConnectionLost: the connection ended (EOF, reset, a failed write)
	// after the request may have left, before its answer came. For a
	// money request the terminal keeps a reversal, as for a timeout.
	ErrConnectionLost = errors.New("sim: the connection to the host ended before its answer")
	// ErrNotSignedOn: the terminal holds no working keys.
	ErrNotSignedOn = errors.New("sim: the terminal has not signed on")
	// ErrBadMAC: the host's answer does not carry a valid MAC; a money
	// request is then reversed.
	ErrBadMAC = errors.New("sim: the answer's MAC does not verify")
	// ErrReversalPending: the reversal the terminal owes the host could
	// not be delivered, so no new transaction is sent.
	ErrReversalPending = errors.New("sim: a reversal is still waiting for the host")
)

// Config describes one terminal.
type Config struct {
	// Addr is the host's host:port.
	Addr string
	// TerminalID is field 41 (8 characters) and MerchantID field 42 (15).
	TerminalID, MerchantID string
	// MasterKey is the terminal master key the working keys come under.
	MasterKey cardcrypto.Key
	// Keys is the key scheme asked for at sign-on (default iso.KeysDouble).
	Keys iso.KeyScheme
	// MAC is the MAC algorithm (default iso.MACECB).
	MAC iso.MACAlgorithm
	// Timeout is how long the terminal waits for an answer (default 10 s).
	Timeout time.Duration
	// Batch is the batch number the terminal starts with (default 000001).
	Batch string
	// Dialer makes connections (default a net.Dialer).
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// Card is a card presented at the terminal.
type Card struct {
	PAN string
	PIN string // "" when no PIN is entered
	// Expiry (YYMM) is sent in field 14 when set, as a bank card's is.
	Expiry string
	// Track2, when set, is the swiped stripe: sent in field 35 in place of
	// field 2, the PAN read from it.
	Track2 string
}

// number is the card's number, from the stripe when it was swiped.
func (c Card) number() string {
	if c.PAN == "" && c.Track2 != "" {
		if tr, err := cardcrypto.ParseTrack2(c.Track2); err == nil {
			return tr.PAN.Reveal()
		}
	}
	return c.PAN
}

// Result is the host's answer to one transaction.
type Result struct {
	RC       string // field 39
	STAN     string
	Batch    string
	RRN      string // field 37
	AuthCode string // field 38
	Amount   int64
	Balance  *int64 // field 54, when the host sent one
	// Date is the request's local date (field 13, MMDD): a completion or
	// cancellation names its pre-authorisation by batch, STAN, date and
	// authorisation code.
	Date string
	// Response is the whole answer.
	Response *iso8583.Message
}

// Approved reports whether the host approved the transaction.
func (r Result) Approved() bool { return r.RC == "00" }

// tx is one transaction of the terminal's batch.
type tx struct {
	kind   string // "purchase", "void", "refund", "preauth", "completion", "cancel"
	stan   string
	pan    string
	amount int64
	voided bool
	orig   string // a void's original STAN
}

// Terminal is one simulated terminal. Its methods are safe for concurrent
// use, and, like a terminal, do one transaction at a time.
type Terminal struct {
	cfg Config

	mu       sync.Mutex
	conn     net.Conn
	keys     cardcrypto.WorkingKeys
	signedOn bool
	stan     int
	batch    string
	txs      []*tx
	// reversal is the 0400 owed to the host, and what it reverses.
	reversal   *iso8583.Message
	reversalOf *tx
	timeout    time.Duration
	reversals  int // reversals the host answered
}

// New returns a terminal that has not signed on.
func New(cfg Config) (*Terminal, error) {
	if len(cfg.TerminalID) != 8 || len(cfg.MerchantID) != 15 {
		return nil, errors.New("sim: terminal id is 8 characters and merchant id 15")
	}
	if cfg.Keys == "" {
		cfg.Keys = iso.KeysDouble
	}
	if cfg.MAC == 0 {
		cfg.MAC = iso.MACECB
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Batch == "" {
		cfg.Batch = "000001"
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	return &Terminal{cfg: cfg, batch: cfg.Batch, timeout: cfg.Timeout}, nil
}

// ID returns the terminal id (field 41).
func (t *Terminal) ID() string { return t.cfg.TerminalID }

// SetTimeout changes how long the terminal waits for an answer.
func (t *Terminal) SetTimeout(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timeout = d
}

// Batch returns the batch the terminal works in.
func (t *Terminal) Batch() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.batch
}

// Keys returns the working keys of the last sign-on.
func (t *Terminal) Keys() cardcrypto.WorkingKeys {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keys
}

// PendingReversal reports whether the terminal owes the host a reversal.
func (t *Terminal) PendingReversal() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reversal != nil
}

// Close hangs up.
func (t *Terminal) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hangUp()
}

func (t *Terminal) hangUp() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

func (t *Terminal) terminal() iso.Terminal {
	return iso.Terminal{Envelope: iso.DefaultEnvelope(0x0003, 0x0000), TerminalID: t.cfg.TerminalID, MerchantID: t.cfg.MerchantID}
}

// NextSTAN returns the STAN the next transaction will use, taking it.
func (t *Terminal) NextSTAN() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nextSTAN()
}

func (t *Terminal) nextSTAN() string {
	t.stan = t.stan%999999 + 1
	return fmt.Sprintf("%06d", t.stan)
}

// roundTrip sends m and reads the answer with the same STAN, dropping late
// answers to earlier requests. A timeout hangs up, so a late answer never
// reaches the next exchange.
func (t *Terminal) roundTrip(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	frame, err := iso.EncodeFrame(m)
	if err != nil {
		return nil, err
	}
	stan, _ := m.GetString(iso.FieldSTAN)
	if t.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, t.timeout)
		c, err := t.cfg.Dialer.DialContext(dctx, "tcp", t.cfg.Addr)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("sim: connecting to %s: %w", t.cfg.Addr, err)
		}
		t.conn = c
	}
	deadline := time.Now().Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = t.conn.SetDeadline(deadline)
	if _, err := t.conn.Write(frame); err != nil {
		_ = t.hangUp()
		if isTimeout(err) {
			return nil, ErrTimeout
		}
		// Part of the frame may have reached the host: it may act on it.
		return nil, fmt.Errorf("%w: sending: %w", ErrConnectionLost, err)
	}
	var codec iso.Codec
	for {
		resp, err := codec.ReadMessage(t.conn)
		if err != nil {
			_ = t.hangUp()
			if isTimeout(err) {
				return nil, ErrTimeout
			}
			return nil, fmt.Errorf("%w: reading the answer: %w", ErrConnectionLost, err)
		}
		if resp == nil {
			continue
		}
		if s, _ := resp.GetString(iso.FieldSTAN); s == stan {
			return resp, nil
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Exchange sends m as it is, MACed first when mac is true, and returns the
// host's answer: for tests that build their own messages.
func (t *Terminal) Exchange(ctx context.Context, m *iso8583.Message, mac bool) (*iso8583.Message, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if mac {
		if !t.signedOn {
			return nil, ErrNotSignedOn
		}
		if err := iso.SetMAC(m, t.cfg.MAC, t.keys.MAC); err != nil {
			return nil, err
		}
	}
	return t.roundTrip(ctx, m)
}

// SignOn asks the host for working keys (0800) and checks each one's check
// value under the master key; it returns the response code.
func (t *Terminal) SignOn(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := iso.NewSignOn(t.terminal(), t.nextSTAN(), t.batch, time.Now(), t.cfg.Keys, "001")
	if err != nil {
		return "", err
	}
	resp, err := t.roundTrip(ctx, m)
	if err != nil {
		return "", err
	}
	rc, _ := resp.GetString(iso.FieldResponseCode)
	if rc != "00" {
		return rc, nil
	}
	f62, err := resp.GetBytes(iso.FieldReserved62)
	if err != nil {
		return rc, fmt.Errorf("sim: sign-on answer without keys: %w", err)
	}
	keys, err := cardcrypto.ParseSignOnKeys(t.cfg.MasterKey, f62)
	if err != nil {
		return rc, err
	}
	if f60, err := resp.GetString(iso.FieldReserved60); err == nil {
		if p, err := iso.ParseField60(f60); err == nil && p.Batch != t.batch {
			t.batch, t.txs = p.Batch, nil
		}
	}
	t.keys, t.signedOn = keys, true
	return rc, nil
}

// request builds a financial request for card.
func (t *Terminal) request(c Card, amount int64, orig iso.Original) (iso.Request, error) {
	var pan cardcrypto.PAN
	card := iso.Card{Expiry: c.Expiry, EntryMode: iso.EntryChipNoPIN}
	if c.Track2 != "" {
		tr, err := cardcrypto.ParseTrack2(c.Track2)
		if err != nil {
			return iso.Request{}, err
		}
		pan, card.Track2, card.EntryMode = tr.PAN, c.Track2, iso.EntrySwipeNoPIN
	} else {
		p, err := cardcrypto.ParsePAN(c.PAN)
		if err != nil {
			return iso.Request{}, err
		}
		pan, card.PAN = p, p
	}
	r := iso.Request{Terminal: t.terminal(), STAN: t.nextSTAN(), Batch: t.batch, At: time.Now(), Amount: amount,
		Currency: "156", Original: orig, Card: card}
	if c.PIN != "" {
		pin, err := cardcrypto.ParsePIN(c.PIN)
		if err != nil {
			return iso.Request{}, err
		}
		block, err := cardcrypto.EncryptPINBlock(t.keys.PIN, pin, pan)
		if err != nil {
			return iso.Request{}, err
		}
		r.Card.PINBlock, r.Card.TripleDESPIN, r.Card.EntryMode = block, len(t.keys.PIN) > 8, iso.EntryChipPIN
		if c.Track2 != "" {
			r.Card.EntryMode = iso.EntrySwipePIN
		}
	}
	return r, nil
}

// money sends a request that moves money: a reversal owed goes first; the
// request is MACed; when it gets no answer the terminal can accept (a
// timeout, a lost connection, a bad MAC) the terminal keeps its reversal.
func (t *Terminal) money(ctx context.Context, m *iso8583.Message, reversible *tx) (Result, error) {
	if !t.signedOn {
		return Result{}, ErrNotSignedOn
	}
	if err := t.flushReversal(ctx); err != nil {
		return Result{}, err
	}
	if err := iso.SetMAC(m, t.cfg.MAC, t.keys.MAC); err != nil {
		return Result{}, err
	}
	resp, err := t.roundTrip(ctx, m)
	if err == nil {
		err = t.checkMAC(resp)
	}
	if err != nil {
		// Whatever stopped the answer, the host may have applied the
		// request: only a reversal makes sure it does not stand.
		if reversible != nil && (errors.Is(err, ErrTimeout) || errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrBadMAC)) {
			reason := iso.ReverseTimeout // no response, however it was lost
			if errors.Is(err, ErrBadMAC) {
				reason = iso.ReverseMACError
			}
			if rev, rerr := iso.NewReversal(m, reason); rerr == nil {
				t.reversal, t.reversalOf = rev, reversible
			}
		}
		return Result{}, err
	}
	return result(resp), nil
}

// checkMAC verifies the MAC of an answer that carries one.
func (t *Terminal) checkMAC(resp *iso8583.Message) error {
	if _, ok := resp.GetFields()[iso.FieldMAC]; !ok {
		return nil
	}
	if err := iso.VerifyMAC(resp, t.cfg.MAC, t.keys.MAC); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMAC, err)
	}
	return nil
}

func result(resp *iso8583.Message) Result {
	get := func(id int) string { s, _ := resp.GetString(id); return s }
	r := Result{RC: get(iso.FieldResponseCode), STAN: get(iso.FieldSTAN), RRN: get(iso.FieldRRN), AuthCode: get(iso.FieldAuthCode), Response: resp}
	r.Amount, _ = strconv.ParseInt(get(iso.FieldAmount), 10, 64)
	if f60, err := iso.ParseField60(get(iso.FieldReserved60)); err == nil {
		r.Batch = f60.Batch
	}
	if b, err := iso.ParseBalance(get(iso.FieldBalance)); err == nil {
		r.Balance = &b.Amount
	}
	return r
}

// SendReversal delivers the reversal the terminal owes, if any; it
// returns the host's response code ("" when none was owed).
func (t *Terminal) SendReversal(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reversal == nil {
		return "", nil
	}
	rc, err := t.sendReversal(ctx)
	return rc, err
}

func (t *Terminal) flushReversal(ctx context.Context) error {
	if t.reversal == nil {
		return nil
	}
	if _, err := t.sendReversal(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrReversalPending, err)
	}
	return nil
}

// sendReversal sends the 0400 owed. The host's answer ends it, except a
// system error, on which it is sent again before the next transaction. A
// reversed void the host answers 12 stands: its purchase is then voided in
// the terminal's batch.
func (t *Terminal) sendReversal(ctx context.Context) (string, error) {
	m := t.reversal
	if err := iso.SetMAC(m, t.cfg.MAC, t.keys.MAC); err != nil {
		return "", err
	}
	resp, err := t.roundTrip(ctx, m)
	if err != nil {
		return "", err
	}
	rc, _ := resp.GetString(iso.FieldResponseCode)
	switch rc {
	case "96", "91", "68", "98", "A0":
		return rc, fmt.Errorf("sim: the host answered the reversal %s", rc)
	}
	if of := t.reversalOf; of != nil && rc == "12" {
		switch of.kind {
		case "void":
			t.void(of.orig)
		case "completion", "refund":
			// The host cannot undo a completion or refund it applied: it
			// stands.
			t.txs = append(t.txs, of)
		}
	}
	t.reversal, t.reversalOf = nil, nil
	t.reversals++
	return rc, nil
}

// Reversals returns how many reversals the host has answered.
func (t *Terminal) Reversals() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reversals
}

func (t *Terminal) void(stan string) {
	for _, x := range t.txs {
		if x.kind == "purchase" && x.stan == stan {
			x.voided = true
		}
	}
}

// transact sends the request build makes of card c, amount and orig;
// reversible, when not nil, is what a reversal of it undoes, its STAN
// filled in. The result carries the request's batch; the request is
// returned, once sent, for what the caller keeps of it.
func (t *Terminal) transact(ctx context.Context, c Card, amount int64, orig iso.Original, build func(iso.Request) (*iso8583.Message, error), reversible *tx) (Result, iso.Request, error) {
	if !t.signedOn {
		return Result{}, iso.Request{}, ErrNotSignedOn
	}
	r, err := t.request(c, amount, orig)
	if err != nil {
		return Result{}, r, err
	}
	m, err := build(r)
	if err != nil {
		return Result{}, iso.Request{}, err
	}
	if reversible != nil {
		reversible.stan = r.STAN
	}
	res, err := t.money(ctx, m, reversible)
	res.Batch = r.Batch
	return res, r, err
}

// Purchase pays amount (fen) with card.
func (t *Terminal) Purchase(ctx context.Context, c Card, amount int64) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &tx{kind: "purchase", pan: c.number(), amount: amount}
	res, _, err := t.transact(ctx, c, amount, iso.Original{}, iso.NewPurchase, x)
	if err == nil && res.Approved() {
		t.txs = append(t.txs, x)
	}
	return res, err
}

// Void cancels an approved purchase of the current batch.
func (t *Terminal) Void(ctx context.Context, orig Result, c Card) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &tx{kind: "void", pan: c.number(), amount: orig.Amount, orig: orig.STAN}
	res, _, err := t.transact(ctx, Card{PAN: c.number()}, orig.Amount, iso.Original{Batch: orig.Batch, STAN: orig.STAN, RRN: orig.RRN}, iso.NewVoid, x)
	if err == nil && res.Approved() {
		t.void(orig.STAN)
		t.txs = append(t.txs, x)
	}
	return res, err
}

// Refund returns amount of an earlier purchase, possibly of an earlier
// batch. One without an answer is reversed like a purchase: the host
// answers 12 if it applied it (it stands and is counted), 00 if not.
func (t *Terminal) Refund(ctx context.Context, orig Result, c Card, amount int64) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &tx{kind: "refund", pan: c.number(), amount: amount}
	res, _, err := t.transact(ctx, Card{PAN: c.number()}, amount, iso.Original{Batch: orig.Batch, STAN: orig.STAN, RRN: orig.RRN}, iso.NewRefund, x)
	if err == nil && res.Approved() {
		t.txs = append(t.txs, x)
	}
	return res, err
}

// PreAuth holds amount (fen) on card (0100): the host answers with an
// authorisation code, and the balance left available in field 54. A
// pre-authorisation counts in no batch total; its completion does.
func (t *Terminal) PreAuth(ctx context.Context, c Card, amount int64) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res, r, err := t.transact(ctx, c, amount, iso.Original{}, iso.NewPreAuth, &tx{kind: "preauth", pan: c.number(), amount: amount})
	if r.STAN != "" { // sent
		res.Date = r.At.Format("0102")
	}
	return res, err
}

// Complete completes pre-authorisation orig for amount (0200), at most
// the amount held; the rest is released.
func (t *Terminal) Complete(ctx context.Context, orig Result, c Card, amount int64) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &tx{kind: "completion", pan: c.number(), amount: amount, orig: orig.STAN}
	res, _, err := t.transact(ctx, Card{PAN: c.number()}, amount, originalOf(orig), iso.NewCompletion, x)
	if err == nil && res.Approved() {
		t.txs = append(t.txs, x)
	}
	return res, err
}

// CancelPreAuth releases pre-authorisation orig (0100) for its whole
// amount.
func (t *Terminal) CancelPreAuth(ctx context.Context, orig Result, c Card) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res, _, err := t.transact(ctx, Card{PAN: c.number()}, orig.Amount, originalOf(orig), iso.NewPreAuthVoid,
		&tx{kind: "cancel", pan: c.number(), amount: orig.Amount, orig: orig.STAN})
	return res, err
}

func originalOf(orig Result) iso.Original {
	return iso.Original{Batch: orig.Batch, STAN: orig.STAN, Date: orig.Date, AuthCode: orig.AuthCode}
}

// Balance asks for the card's balance.
func (t *Terminal) Balance(ctx context.Context, c Card) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.signedOn {
		return Result{}, ErrNotSignedOn
	}
	r, err := t.request(c, 0, iso.Original{})
	if err != nil {
		return Result{}, err
	}
	m, err := iso.NewBalanceInquiry(r)
	if err != nil {
		return Result{}, err
	}
	return t.money(ctx, m, nil)
}

// Totals are the terminal's own totals of its batch: purchases that stand
// and completions as debits, refunds as credits.
func (t *Terminal) Totals() iso.Totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.totals()
}

func (t *Terminal) totals() iso.Totals {
	var tot iso.Totals
	for _, x := range t.txs {
		switch {
		case (x.kind == "purchase" && !x.voided) || x.kind == "completion":
			tot.Domestic.DebitAmount += x.amount
			tot.Domestic.DebitCount++
		case x.kind == "refund":
			tot.Domestic.CreditAmount += x.amount
			tot.Domestic.CreditCount++
		}
	}
	return tot
}

// Settle sends the batch totals (0500). Balanced (00), the terminal moves
// to the next batch; not balanced (95), UploadBatch sends its transactions.
func (t *Terminal) Settle(ctx context.Context) (string, error) {
	return t.settle(ctx, nil)
}

// SettleWith settles with totals other than the terminal's own, to show a
// batch that does not balance.
func (t *Terminal) SettleWith(ctx context.Context, totals iso.Totals) (string, error) {
	return t.settle(ctx, &totals)
}

func (t *Terminal) settle(ctx context.Context, totals *iso.Totals) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.signedOn {
		return "", ErrNotSignedOn
	}
	tot := t.totals()
	if totals != nil {
		tot = *totals
	}
	m, err := iso.NewSettlement(t.terminal(), t.nextSTAN(), t.batch, time.Now(), tot, "001")
	if err != nil {
		return "", err
	}
	res, err := t.money(ctx, m, nil)
	if err != nil {
		return "", err
	}
	if res.RC == "00" {
		t.nextBatch()
	}
	return res.RC, nil
}

func (t *Terminal) nextBatch() {
	n, _ := strconv.Atoi(t.batch)
	t.batch, t.txs = fmt.Sprintf("%06d", n%999999+1), nil
}

// UploadBatch sends the batch's purchases that stand, completions and
// refunds (0320),
// up to seven a message, the last marked, then moves to the next batch.
func (t *Terminal) UploadBatch(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.signedOn {
		return ErrNotSignedOn
	}
	var entries []iso.BatchEntry
	for _, x := range t.txs {
		if (x.kind == "purchase" && !x.voided) || x.kind == "completion" || x.kind == "refund" {
			entries = append(entries, iso.BatchEntry{CardOrg: "00", STAN: x.stan, PAN: x.pan, Amount: x.amount})
		}
	}
	chunks := slices.Collect(slices.Chunk(entries, iso.MaxBatchEntries))
	for i, chunk := range chunks {
		m, err := iso.NewBatchUpload(t.terminal(), t.nextSTAN(), t.batch, chunk, i == len(chunks)-1)
		if err != nil {
			return err
		}
		res, err := t.money(ctx, m, nil)
		if err != nil {
			return err
		}
		if res.RC != "00" {
			return fmt.Errorf("sim: batch upload answered %s", res.RC)
		}
	}
	t.nextBatch()
	return nil
}
