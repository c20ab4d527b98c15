// Package sim is a UnionPay switch simulator for the unionpay plugin's
// tests and demo: it listens on real TCP, speaks the plugin's ISO 8583
// dialect (sdk/pos/iso), accepts sign-on with a key exchange under the
// link's master key, answers echoes, purchases, pre-authorisations and
// their completions and cancellations, voids, refunds, balance inquiries
// and reversals (0400) by simple rules, and records every one of them.
//
// Rules for a purchase, pre-authorisation or balance inquiry, in order: a
// card number failing Luhn is declined 14, an expired card 54, a card
// marked with a wrong PIN 55; then the PIN (field 52, deciphered under the
// PIN key issued at sign-on): undecipherable 99, a card whose PIN is locked
// 75, a wrong PIN 55 (the third wrong one in a row locks it), no PIN for a
// card that has one 55; then an amount above the card's available limit
// 51; anything else is approved and reduces the limit (a
// pre-authorisation holds it), which a reversal restores. Completions,
// voids, refunds and pre-authorisation cancellations find their original
// by field 61 (and its RRN or authorisation code): an unknown or already
// undone original is 25, an amount the original does not allow 64, an
// original of the wrong kind 12. Tests can delay or drop responses and
// hang up the connection, to play a slow or failing switch.
package sim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
	"github.com/moov-io/iso8583"
)

// DefaultLimit is the available limit of a card the switch was not told
// about: 5,000.00 yuan.
const DefaultLimit = 500_000

// Options configure a Switch.
type Options struct {
	// MasterKey is the link's master key (16 bytes), under which the
	// working keys go out at sign-on. Required.
	MasterKey cardcrypto.Key
	// MAC is the algorithm of field 64; zero means ANSI X9.19.
	MAC iso.MACAlgorithm
	// DefaultLimit is the limit of unknown cards; zero means DefaultLimit.
	DefaultLimit int64
	// Now is the switch's clock, for expiry dates; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Card is what the switch knows about one card.
type Card struct {
	Limit    int64  // available, in minor units
	WrongPIN bool   // every authorisation is declined 55
	PIN      string // when set, purchases, pre-authorisations and balance inquiries need this PIN
}

// PINTries is how many wrong PINs in a row lock a card's PIN (75).
const PINTries = 3

// Kinds of financial request, as Authorisation.Kind.
const (
	KindPurchase      = "purchase"
	KindPreAuth       = "preauth"
	KindCompletion    = "completion"
	KindVoid          = "void"
	KindRefund        = "refund"
	KindPreAuthCancel = "preauth_cancel"
	KindBalance       = "balance"
)

// Authorisation is one financial request (0100, 0200 or 0220) the switch
// received.
type Authorisation struct {
	Kind         string
	MTI          string
	STAN         string
	MaskedPAN    string
	Amount       int64
	Terminal     string
	ResponseCode string
	Answered     bool   // false when the response was dropped
	Original     string // the STAN of the original, for completions, voids, refunds and cancellations
	// Repeats counts how many times the same request (same STAN) came
	// again and was answered with its first answer, without being applied again.
	Repeats int
}

// txn is the switch's state of one request it applied.
type txn struct {
	kind     string
	mti      string
	pan      string
	amount   int64
	rc       string
	rrn      string
	authCode string
	f61      string // field 61 of the request, to recognise a repeat
	balance  string // field 54 of the answer
	orig     string // the original's STAN
	// state
	held     int64 // a pre-authorisation's hold still on the limit
	done     bool  // voided, completed or cancelled
	refunded int64
	undo     func() // what its reversal does, nil once reversed
}

// Reversal is one 0400 the switch received.
type Reversal struct {
	STAN         string
	Amount       int64
	Reason       string // field 39 of the 0400
	ResponseCode string // 00, or 25 for an unknown original
	// Applied is true for the one reversal that undid an approved
	// authorisation; a repeat of it is recorded with Applied false.
	Applied bool
}

// Switch is the simulator. Its methods are safe for concurrent use.
type Switch struct {
	opt Options
	log *slog.Logger

	mu        sync.Mutex
	cards     map[string]*Card
	auths     []Authorisation
	byKey     map[string]int // acquirer STAN -> index in auths
	reversed  map[string]bool
	txns      map[string]*txn // acquirer STAN -> what it did
	pinFails  map[string]int  // card number -> wrong PINs in a row
	reversals []Reversal
	signOns   int
	echoes    int
	delay     time.Duration
	hold      chan struct{} // while set, answers wait until it is closed
	drop      int
	hangUps   int
	badMACs   int
	conns     map[net.Conn]bool
	seq       int
}

// New returns a switch; start it with Start.
func New(o Options) *Switch {
	if o.MAC == 0 {
		o.MAC = iso.MACX919
	}
	if o.DefaultLimit == 0 {
		o.DefaultLimit = DefaultLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Switch{opt: o, log: log, cards: map[string]*Card{}, byKey: map[string]int{},
		reversed: map[string]bool{}, txns: map[string]*txn{}, pinFails: map[string]int{}, conns: map[net.Conn]bool{}}
}

// SetCard tells the switch about a card.
func (s *Switch) SetCard(pan string, c Card) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cards[pan] = &c
}

// Limit returns a card's available limit.
func (s *Switch) Limit(pan string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.card(pan).Limit
}

// ResetPINTries unlocks a card's PIN after too many wrong ones.
func (s *Switch) ResetPINTries(pan string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pinFails, pan)
}

// PINLocked reports whether a card's PIN is locked.
func (s *Switch) PINLocked(pan string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinFails[pan] >= PINTries
}

// SetDelay delays every authorisation response by d.
func (s *Switch) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// HoldAnswers makes the switch process financial requests but hold their
// answers until release is called, so a test outlasts the plugin's response
// timeout without racing the clock.
func (s *Switch) HoldAnswers() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// DropAuthorisations makes the switch process the next n financial
// requests (authorisations, completions, voids, refunds, cancellations,
// balance inquiries) but never answer them.
func (s *Switch) DropAuthorisations(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = n
}

// HangUpOnReversals makes the switch close the connection, without
// processing it, on each of the next n reversals.
func (s *Switch) HangUpOnReversals(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangUps = n
}

// CorruptMACs makes the switch answer the next n authorisations (having
// processed them) with a wrong MAC.
func (s *Switch) CorruptMACs(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badMACs = n
}

// DropConnections closes every open connection.
func (s *Switch) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Authorisations returns every financial request received, in order.
func (s *Switch) Authorisations() []Authorisation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Authorisation(nil), s.auths...)
}

// Reversals returns every reversal received, in order.
func (s *Switch) Reversals() []Reversal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Reversal(nil), s.reversals...)
}

// SignOns returns how many sign-ons the switch accepted.
func (s *Switch) SignOns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signOns
}

// Echoes returns how many echo tests the switch answered.
func (s *Switch) Echoes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echoes
}

// card returns the card's record, creating it with the default limit.
// s.mu is held.
func (s *Switch) card(pan string) *Card {
	c, ok := s.cards[pan]
	if !ok {
		c = &Card{Limit: s.opt.DefaultLimit}
		s.cards[pan] = c
	}
	return c
}

// Start listens on addr ("127.0.0.1:0" for any free port) and serves until
// stop is called; it returns the address listened on.
func (s *Switch) Start(addr string) (string, func(), error) {
	if len(s.opt.MasterKey) != 16 {
		return "", nil, errors.New("sim: the master key must be 16 bytes")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c)
			}()
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = ln.Close()
			s.DropConnections()
			wg.Wait()
		})
	}
	return ln.Addr().String(), stop, nil
}

// conn is one connection from an acquirer.
type conn struct {
	c   net.Conn
	wmu sync.Mutex
	mu  sync.Mutex
	mak cardcrypto.Key // nil until signed on
	pik cardcrypto.Key // the PIN key issued at sign-on
	wg  sync.WaitGroup
}

func (s *Switch) serve(nc net.Conn) {
	c := &conn{c: nc}
	defer func() {
		_ = nc.Close()
		c.wg.Wait()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	for {
		m, err := iso.Codec{}.ReadMessage(nc)
		if err != nil {
			var de *iso.DecodeError
			if errors.As(err, &de) {
				s.log.Warn("undecodable frame", "err", err)
				continue
			}
			return
		}
		if m == nil {
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			s.handle(c, m)
		}()
	}
}

func (c *conn) send(m *iso8583.Message) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = iso.Codec{}.WriteMessage(c.c, m)
}

func (s *Switch) handle(c *conn, m *iso8583.Message) {
	mti, _ := m.GetMTI()
	switch mti {
	case "0800":
		s.network(c, m)
	case "0100", "0200", "0220":
		s.authorise(c, m)
	case "0400":
		s.reverse(c, m)
	default:
		s.log.Warn("unsupported message", "mti", mti)
	}
}

func (s *Switch) network(c *conn, m *iso8583.Message) {
	f60, _ := m.GetString(iso.FieldReserved60)
	p, err := iso.ParseField60(f60)
	if err != nil {
		resp, _ := iso.NewResponse(m, "30")
		if resp != nil {
			c.send(resp)
		}
		return
	}
	if p.NetworkCode == iso.NetEcho {
		s.mu.Lock()
		s.echoes++
		s.mu.Unlock()
		if resp, err := iso.NewResponse(m, "00"); err == nil {
			c.send(resp)
		}
		return
	}
	w := cardcrypto.WorkingKeys{PIN: randomKey(), MAC: randomKey()}
	keys, err := cardcrypto.BuildSignOnKeys(s.opt.MasterKey, w)
	if err != nil {
		s.log.Error("building working keys", "err", err)
		return
	}
	resp, err := iso.NewSignOnResponse(m, "00", p.Batch, s.opt.Now(), keys)
	if err != nil {
		s.log.Error("building the sign-on response", "err", err)
		return
	}
	c.mu.Lock()
	c.mak, c.pik = w.MAC, w.PIN
	c.mu.Unlock()
	s.mu.Lock()
	s.signOns++
	s.mu.Unlock()
	s.log.Info("signed on", "mac_key", w.MAC)
	c.send(resp)
}

func randomKey() cardcrypto.Key {
	k := make(cardcrypto.Key, 16)
	_, _ = rand.Read(k)
	return cardcrypto.AdjustOddParity(k)
}

// checkMAC verifies a financial message's MAC; it returns the response
// code to answer with when it fails.
func (s *Switch) checkMAC(c *conn, m *iso8583.Message) (cardcrypto.Key, string) {
	c.mu.Lock()
	mak := c.mak
	c.mu.Unlock()
	if mak == nil {
		return nil, "97" // not signed on
	}
	if err := iso.VerifyMAC(m, s.opt.MAC, mak); err != nil {
		return mak, "A0"
	}
	return mak, ""
}

func (s *Switch) answer(c *conn, req *iso8583.Message, mak cardcrypto.Key, rc string, extra map[int]string) {
	resp, err := iso.NewResponse(req, rc)
	if err != nil {
		s.log.Error("building a response", "err", err)
		return
	}
	for id, v := range extra {
		if err := resp.Field(id, v); err != nil {
			s.log.Error("building a response", "field", id, "err", err)
			return
		}
	}
	if mak != nil {
		if err := iso.SetMAC(resp, s.opt.MAC, mak); err != nil {
			s.log.Error("MAC of a response", "err", err)
			return
		}
	}
	c.send(resp)
}

// kindOf names a financial request by its MTI, processing code (field 3),
// condition code (field 25) and message type (field 60.1).
func kindOf(mti, proc, cond, f60 string) string {
	p2 := ""
	if len(proc) >= 2 {
		p2 = proc[:2]
	}
	switch {
	case mti == "0100" && p2 == "03":
		return KindPreAuth
	case mti == "0100" && p2 == "20":
		return KindPreAuthCancel
	case mti == "0200" && p2 == "00" && (cond == iso.CondPreAuth || strings.HasPrefix(f60, iso.TypeCompletion)):
		return KindCompletion
	case mti == "0200" && p2 == "00":
		return KindPurchase
	case mti == "0200" && p2 == "20":
		return KindVoid
	case mti == "0200" && p2 == "31":
		return KindBalance
	case mti == "0220" && p2 == "20":
		return KindRefund
	}
	return ""
}

// repeatable kinds are answered again, not applied again, when the same
// request (same STAN, MTI and field 61) comes twice: an acquirer resends a
// void, refund or cancellation whose answer it never saw.
func repeatable(kind string) bool {
	return kind == KindVoid || kind == KindRefund || kind == KindPreAuthCancel
}

func (s *Switch) authorise(c *conn, m *iso8583.Message) {
	mak, rc := s.checkMAC(c, m)
	mti, _ := m.GetMTI()
	stan, _ := m.GetString(iso.FieldSTAN)
	pan, _ := m.GetString(iso.FieldPAN)
	expiry, _ := m.GetString(iso.FieldExpiry)
	tid, _ := m.GetString(iso.FieldTerminalID)
	proc, _ := m.GetString(iso.FieldProcessingCode)
	cond, _ := m.GetString(iso.FieldConditionCode)
	f60, _ := m.GetString(iso.FieldReserved60)
	f61, _ := m.GetString(iso.FieldOriginal)
	rrn, _ := m.GetString(iso.FieldRRN)
	authCode, _ := m.GetString(iso.FieldAuthCode)
	currency, _ := m.GetString(iso.FieldCurrency)
	var pinBlock []byte
	if _, ok := m.GetFields()[iso.FieldPINBlock]; ok {
		pinBlock, _ = m.GetBytes(iso.FieldPINBlock)
	}
	amountText, _ := m.GetString(iso.FieldAmount)
	amount, _ := strconv.ParseInt(amountText, 10, 64)
	if rc == "A0" || rc == "97" {
		s.log.Warn("request refused", "mti", mti, "stan", stan, "response_code", rc)
		s.answer(c, m, mak, rc, nil)
		return
	}
	c.mu.Lock()
	pik := c.pik
	c.mu.Unlock()
	kind := kindOf(mti, proc, cond, f60)

	s.mu.Lock()
	if i, dup := s.byKey[stan]; dup {
		t := s.txns[stan]
		if t != nil && repeatable(kind) && t.kind == kind && t.mti == mti && t.f61 == f61 {
			s.auths[i].Repeats++
			rc, extra := t.rc, t.extra()
			s.mu.Unlock()
			s.log.Info("repeated request answered again", "kind", kind, "stan", stan, "response_code", rc)
			s.answer(c, m, mak, rc, extra)
			return
		}
		s.mu.Unlock()
		s.answer(c, m, mak, "94", nil)
		return
	}
	t := &txn{kind: kind, mti: mti, pan: pan, amount: amount, f61: f61}
	switch kind {
	case KindPurchase, KindPreAuth, KindBalance:
		t.rc = s.cardRules(t, expiry, pinBlock, pik, currency)
	case KindCompletion, KindVoid, KindRefund, KindPreAuthCancel:
		t.rc = s.referenced(t, f61, rrn, authCode)
	default:
		t.rc = "12" // not a transaction this switch knows
	}
	rc = t.rc
	answered := true
	if s.drop > 0 {
		s.drop--
		answered = false
	}
	delay, hold := s.delay, s.hold
	if answered && s.badMACs > 0 {
		s.badMACs--
		mak = make(cardcrypto.Key, 16) // not the session's key
	}
	s.seq++
	t.rrn = fmt.Sprintf("%012d", s.seq)
	if rc == "00" {
		t.authCode = fmt.Sprintf("%06d", s.seq%1_000_000)
	}
	s.byKey[stan] = len(s.auths)
	s.txns[stan] = t
	s.auths = append(s.auths, Authorisation{Kind: kind, MTI: mti, STAN: stan, MaskedPAN: cardcrypto.MaskPAN(t.pan), Amount: amount,
		Terminal: tid, ResponseCode: rc, Answered: answered, Original: t.orig})
	extra := t.extra()
	s.mu.Unlock()
	s.log.Info("financial request", "kind", kind, "mti", mti, "stan", stan, "pan", cardcrypto.MaskPAN(t.pan), "amount", amount,
		"response_code", rc, "answered", answered)
	if !answered {
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if hold != nil {
		<-hold
	}
	s.answer(c, m, mak, rc, extra)
}

// extra is what the switch adds to its answer: RRN, authorisation code
// when approved, balance for an inquiry. s.mu is held.
func (t *txn) extra() map[int]string {
	extra := map[int]string{iso.FieldRRN: t.rrn}
	if t.rc == "00" {
		extra[iso.FieldAuthCode] = t.authCode
		if t.balance != "" {
			extra[iso.FieldBalance] = t.balance
		}
	}
	return extra
}

// cardRules decides a purchase, pre-authorisation or balance inquiry and,
// approved, applies it. s.mu is held.
func (s *Switch) cardRules(t *txn, expiry string, pinBlock []byte, pik cardcrypto.Key, currency string) string {
	card := s.card(t.pan)
	switch {
	case !cardcrypto.LuhnValid(t.pan):
		return "14"
	case expired(expiry, s.opt.Now()):
		return "54"
	case card.WrongPIN:
		return "55"
	}
	if rc := s.checkPIN(card, t.pan, pinBlock, pik); rc != "" {
		return rc
	}
	switch t.kind {
	case KindBalance:
		if currency == "" {
			currency = "156"
		}
		f54, err := iso.Balance{AccountType: "00", AmountType: "02", Currency: currency, Amount: card.Limit}.Field54()
		if err != nil {
			return "96"
		}
		t.balance = f54
		return "00"
	case KindPreAuth:
		if t.amount > card.Limit {
			return "51"
		}
		card.Limit -= t.amount
		t.held = t.amount
		t.undo = func() {
			card.Limit += t.held
			t.held, t.done = 0, true
		}
		return "00"
	default:
		if t.amount > card.Limit {
			return "51"
		}
		card.Limit -= t.amount
		t.undo = func() { card.Limit += t.amount }
		return "00"
	}
}

// checkPIN verifies field 52 against the card's PIN; it returns the
// response code of a refusal, or "" to go on. s.mu is held.
func (s *Switch) checkPIN(card *Card, pan string, pinBlock []byte, pik cardcrypto.Key) string {
	if pinBlock == nil {
		if card.PIN != "" {
			return "55" // a PIN is required and none was entered
		}
		return ""
	}
	if card.PIN != "" && s.pinFails[pan] >= PINTries {
		return "75"
	}
	p, err := cardcrypto.ParsePAN(pan)
	if err != nil {
		return "14"
	}
	got, err := cardcrypto.DecryptPINBlock(pik, pinBlock, p)
	if err != nil {
		return "99"
	}
	if card.PIN == "" {
		return ""
	}
	want, err := cardcrypto.ParsePIN(card.PIN)
	if err != nil || !got.Equal(want) {
		s.pinFails[pan]++
		return "55"
	}
	delete(s.pinFails, pan)
	return ""
}

// referenced decides a completion, void, refund or pre-authorisation
// cancellation against its original and, approved, applies it. s.mu is held.
func (s *Switch) referenced(t *txn, f61, rrn, authCode string) string {
	ref, err := iso.ParseOriginal(f61)
	if err != nil {
		return "25"
	}
	t.orig = ref.STAN
	o, ok := s.txns[ref.STAN]
	if !ok || o.rc != "00" || s.reversed[ref.STAN] {
		return "25"
	}
	if t.pan == "" {
		t.pan = o.pan
	}
	if t.pan != o.pan {
		return "25"
	}
	card := s.card(o.pan)
	switch t.kind {
	case KindCompletion, KindPreAuthCancel:
		if o.kind != KindPreAuth {
			return "12"
		}
		if authCode != o.authCode || o.done {
			return "25"
		}
	default:
		if o.kind != KindPurchase && o.kind != KindCompletion {
			return "12"
		}
		if rrn != o.rrn || o.done {
			return "25"
		}
	}
	switch t.kind {
	case KindCompletion:
		if t.amount > o.held {
			return "64"
		}
		held := o.held
		card.Limit += held - t.amount
		o.held, o.done = 0, true
		t.undo = func() {
			card.Limit -= held - t.amount
			o.held, o.done = held, false
		}
	case KindPreAuthCancel:
		if t.amount != o.amount {
			return "64"
		}
		held := o.held
		card.Limit += held
		o.held, o.done = 0, true
		t.undo = func() {
			card.Limit -= held
			o.held, o.done = held, false
		}
	case KindVoid:
		if t.amount != o.amount || o.refunded > 0 {
			return "64"
		}
		card.Limit += o.amount
		o.done = true
		t.undo = func() {
			card.Limit -= o.amount
			o.done = false
		}
	case KindRefund:
		if t.amount > o.amount-o.refunded {
			return "64"
		}
		card.Limit += t.amount
		o.refunded += t.amount
		t.undo = func() {
			card.Limit -= t.amount
			o.refunded -= t.amount
		}
	}
	return "00"
}

func expired(yymm string, now time.Time) bool {
	e, err := cardcrypto.ParseExpiry(yymm)
	if err != nil {
		return false // no expiry date: the issuer checks track 2 instead
	}
	return e.Expired(now)
}

func (s *Switch) reverse(c *conn, m *iso8583.Message) {
	s.mu.Lock()
	if s.hangUps > 0 {
		s.hangUps--
		s.mu.Unlock()
		s.log.Info("hanging up on a reversal")
		_ = c.c.Close()
		return
	}
	s.mu.Unlock()
	mak, rc := s.checkMAC(c, m)
	stan, _ := m.GetString(iso.FieldSTAN)
	reason, _ := m.GetString(iso.FieldResponseCode)
	amountText, _ := m.GetString(iso.FieldAmount)
	amount, _ := strconv.ParseInt(amountText, 10, 64)
	if rc != "" {
		s.answer(c, m, mak, rc, nil)
		return
	}
	s.mu.Lock()
	r := Reversal{STAN: stan, Amount: amount, Reason: reason, ResponseCode: "00"}
	_, ok := s.byKey[stan]
	switch {
	case !ok:
		r.ResponseCode = "25"
	case !s.reversed[stan]:
		s.reversed[stan] = true
		r.Applied = true
		if t := s.txns[stan]; t != nil && t.undo != nil {
			t.undo()
			t.undo = nil
		}
	}
	s.reversals = append(s.reversals, r)
	s.mu.Unlock()
	s.log.Info("reversal", "stan", stan, "reason", reason, "response_code", r.ResponseCode, "applied", r.Applied)
	s.answer(c, m, mak, r.ResponseCode, nil)
}
