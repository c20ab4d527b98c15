// Package sim is a UnionPay switch simulator for the unionpay plugin's
// tests and demo: it listens on real TCP, speaks the plugin's ISO 8583
// dialect (plugins/pos/iso), accepts sign-on with a key exchange under the
// link's master key, answers echoes, authorisations (0200) and reversals
// (0400) by simple rules, and records every one of them.
//
// Rules, in order: a card number failing Luhn is declined 14, an expired
// card 54, a card marked with a wrong PIN 55, an amount above the card's
// available limit 51; anything else is approved and reduces the limit,
// which a reversal restores. Tests can delay or drop authorisation
// responses and hang up the connection, to play a slow or failing switch.
package sim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/plugins/pos/iso"
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
	Limit    int64 // available, in minor units
	WrongPIN bool  // every authorisation is declined 55
}

// Authorisation is one 0200 the switch received.
type Authorisation struct {
	STAN         string
	MaskedPAN    string
	Amount       int64
	Terminal     string
	ResponseCode string
	Answered     bool // false when the response was dropped
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
	pans      map[string]string // acquirer STAN -> card number, to restore a limit
	reversals []Reversal
	signOns   int
	echoes    int
	delay     time.Duration
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
		reversed: map[string]bool{}, pans: map[string]string{}, conns: map[net.Conn]bool{}}
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

// SetDelay delays every authorisation response by d.
func (s *Switch) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// DropAuthorisations makes the switch process the next n authorisations
// but never answer them.
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

// Authorisations returns every authorisation received, in order.
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
	case "0200":
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
	c.mak = w.MAC
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

func (s *Switch) authorise(c *conn, m *iso8583.Message) {
	mak, rc := s.checkMAC(c, m)
	stan, _ := m.GetString(iso.FieldSTAN)
	pan, _ := m.GetString(iso.FieldPAN)
	expiry, _ := m.GetString(iso.FieldExpiry)
	tid, _ := m.GetString(iso.FieldTerminalID)
	amountText, _ := m.GetString(iso.FieldAmount)
	amount, _ := strconv.ParseInt(amountText, 10, 64)
	if rc == "A0" || rc == "97" {
		s.log.Warn("authorisation refused", "stan", stan, "response_code", rc)
		s.answer(c, m, mak, rc, nil)
		return
	}
	s.mu.Lock()
	if _, dup := s.byKey[stan]; dup {
		s.mu.Unlock()
		s.answer(c, m, mak, "94", nil)
		return
	}
	card := s.card(pan)
	switch {
	case !cardcrypto.LuhnValid(pan):
		rc = "14"
	case expired(expiry, s.opt.Now()):
		rc = "54"
	case card.WrongPIN:
		rc = "55"
	case amount > card.Limit:
		rc = "51"
	default:
		rc = "00"
		card.Limit -= amount
	}
	answered := true
	if s.drop > 0 {
		s.drop--
		answered = false
	}
	delay := s.delay
	if answered && s.badMACs > 0 {
		s.badMACs--
		mak = make(cardcrypto.Key, 16) // not the session's key
	}
	s.seq++
	seq := s.seq
	s.byKey[stan] = len(s.auths)
	s.pans[stan] = pan
	s.auths = append(s.auths, Authorisation{STAN: stan, MaskedPAN: cardcrypto.MaskPAN(pan), Amount: amount,
		Terminal: tid, ResponseCode: rc, Answered: answered})
	s.mu.Unlock()
	s.log.Info("authorisation", "stan", stan, "pan", cardcrypto.MaskPAN(pan), "amount", amount, "response_code", rc, "answered", answered)
	if !answered {
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	extra := map[int]string{iso.FieldRRN: fmt.Sprintf("%012d", seq)}
	if rc == "00" {
		extra[iso.FieldAuthCode] = fmt.Sprintf("%06d", seq%1_000_000)
	}
	s.answer(c, m, mak, rc, extra)
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
	i, ok := s.byKey[stan]
	switch {
	case !ok:
		r.ResponseCode = "25"
	case !s.reversed[stan]:
		s.reversed[stan] = true
		r.Applied = true
		if a := s.auths[i]; a.ResponseCode == "00" {
			s.card(s.pans[stan]).Limit += a.Amount
		}
	}
	s.reversals = append(s.reversals, r)
	s.mu.Unlock()
	s.log.Info("reversal", "stan", stan, "reason", reason, "response_code", r.ResponseCode, "applied", r.Applied)
	s.answer(c, m, mak, r.ResponseCode, nil)
}
