// Package transit is the hub's transit service: it registers validators
// and issues their keys, prices and posts their taps, and keeps the deny
// list they check cards against when they work offline.
//
// A batch of taps (online taps micro-batched by the transit plugin, or an
// offline upload) is one ledger op: each tap's MAC is checked with its
// device's key, each (device, seq) is posted once, each is priced by the
// fare engine with the card's fare state, and the fares are debited from
// the riders' purses while each operator's merchant account is credited
// once for the whole batch. A tap that cannot be posted is answered with
// its reason and does not sink the others.
package transit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fares"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// Channel is the channel policy transit payments are made under.
const Channel = "transit"

// TransferFares is the kind of the transfer that posts a batch's fares of
// one operator: a debit of each rider's purse and one credit of the
// operator's merchant account.
const TransferFares = "fares"

// DefaultMerchants maps the default fare tables' operators to the merchants
// their fares are credited to.
var DefaultMerchants = map[string]string{"city-bus": "M-CITYBUS", "metro": "M-METRO", "ferry": "M-FERRY"}

// Options configure the service. Zero values take the defaults.
type Options struct {
	// Fares prices taps; default fares.Default().
	Fares *fares.Table
	// Merchants maps a fare operator to its merchant id; default
	// DefaultMerchants.
	Merchants map[string]string
	// MaxAge is the oldest tap accepted; older ones are refused as
	// tap_too_old. Default 30 days.
	MaxAge time.Duration
	// MaxSkew is how far in the future a validator's clock may be. Default
	// 5 minutes.
	MaxSkew time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
	// IssuerPrefix starts the city's card numbers (default
	// cardno.DefaultPrefix): a number without it is a bank card, which a
	// validator does not take.
	IssuerPrefix string
}

// Service is the transit service.
type Service struct {
	eng  *ledger.Engine
	st   store.Store
	cat  *catalog.Catalog
	opts Options

	purse string // the purse transit fares come from

	mu   sync.Mutex
	deny denyCache
}

// denyCache is the deny list as last read, brought up to date with the
// changes since, so that 200 validators asking do not each read 100,000
// rows.
type denyCache struct {
	version int64
	cards   map[string]string // card → reason
}

// New returns the transit service on the hub's ledger writer.
func New(eng *ledger.Engine, cat *catalog.Catalog, opts Options) (*Service, error) {
	if opts.Fares == nil {
		t, err := fares.Default()
		if err != nil {
			return nil, fmt.Errorf("transit: fare tables: %w", err)
		}
		opts.Fares = t
	}
	if opts.Merchants == nil {
		opts.Merchants = DefaultMerchants
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 30 * 24 * time.Hour
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IssuerPrefix == "" {
		opts.IssuerPrefix = cardno.DefaultPrefix
	}
	pol, ok := cat.Policy(Channel)
	if !ok || len(pol.Purses) == 0 {
		return nil, errors.New("transit: no transit channel policy with a purse")
	}
	return &Service{eng: eng, st: eng.Store(), cat: cat, opts: opts, purse: pol.PurseOrder[0]}, nil
}

// DeviceRequest registers a validator.
type DeviceRequest struct {
	ID       string `json:"id"`
	Operator string `json:"operator"`
	Mode     string `json:"mode,omitempty"`
	Route    string `json:"route,omitempty"`
}

// DeviceView is a device as the API shows it. Key is set only in the
// answer to its registration: the hub never shows it again.
type DeviceView struct {
	ID        string    `json:"id"`
	Operator  string    `json:"operator"`
	Merchant  string    `json:"merchant"`
	Mode      string    `json:"mode,omitempty"`
	Route     string    `json:"route,omitempty"`
	Status    string    `json:"status"`
	LastSeq   int64     `json:"last_seq"`
	CreatedAt time.Time `json:"created_at"`
	Key       string    `json:"key,omitempty"`
}

func (s *Service) view(d store.Device) DeviceView {
	return DeviceView{ID: d.ID, Operator: d.Operator, Merchant: s.opts.Merchants[d.Operator], Mode: d.Mode, Route: d.Route,
		Status: d.Status, LastSeq: d.LastSeq, CreatedAt: d.CreatedAt}
}

// RegisterDevice registers a validator of a fare operator and issues its
// MAC key, which the answer carries once.
func (s *Service) RegisterDevice(ctx context.Context, req DeviceRequest) (DeviceView, error) {
	if err := tap.CheckDevice(req.ID); err != nil {
		return DeviceView{}, fault.E(fault.InvalidRequest, "id", err.Error())
	}
	merchant, ok := s.opts.Merchants[req.Operator]
	if !ok {
		return DeviceView{}, fault.E(fault.InvalidRequest, "operator", fmt.Sprintf("no fare operator %q", req.Operator))
	}
	if _, err := s.st.GetMerchant(ctx, merchant); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return DeviceView{}, fault.E(fault.MerchantNotFound, "operator",
				fmt.Sprintf("operator %s's merchant %s is not registered", req.Operator, merchant))
		}
		return DeviceView{}, fault.Wrap(fault.Unavailable, err)
	}
	key := make([]byte, tap.KeySize)
	if _, err := rand.Read(key); err != nil {
		return DeviceView{}, fault.Wrap(fault.Internal, err)
	}
	d := store.Device{ID: req.ID, Operator: req.Operator, Mode: req.Mode, Route: req.Route, Key: key,
		Status: store.DeviceActive, CreatedAt: s.opts.Now().UTC().Truncate(time.Microsecond)}
	if err := s.st.AddDevice(ctx, d); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return DeviceView{}, fault.E(fault.Duplicate, "id", fmt.Sprintf("device %s is registered already", req.ID))
		}
		return DeviceView{}, fault.Wrap(fault.Unavailable, err)
	}
	v := s.view(d)
	v.Key = hex.EncodeToString(key)
	return v, nil
}

// Devices lists the devices of a fare operator ("" for all).
func (s *Service) Devices(ctx context.Context, operator string) ([]DeviceView, error) {
	ds, err := s.st.ListDevices(ctx, operator)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err)
	}
	out := make([]DeviceView, len(ds))
	for i, d := range ds {
		out[i] = s.view(d)
	}
	return out, nil
}

// Result is the answer to a batch of taps.
type Result struct {
	Results         []TapResult `json:"results"`
	Gaps            []Gap       `json:"gaps,omitempty"`
	DenylistVersion int64       `json:"denylist_version"`
}

// TapResult is the answer to one tap.
type TapResult struct {
	Device   string `json:"device"`
	Seq      int64  `json:"seq"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Fare     int64  `json:"fare"`
	Balance  int64  `json:"balance"`
	Transfer string `json:"transfer,omitempty"`
	Denied   bool   `json:"denied,omitempty"`
}

// Tap statuses beyond the stored ones.
const StatusDuplicate = "duplicate"

// Gap is a run of sequence numbers a device has not been heard from.
type Gap struct {
	Device string `json:"device"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
}

// AuditOutcome implements ledger.Outcomer.
func (r *Result) AuditOutcome() string {
	n := map[string]int{}
	for _, t := range r.Results {
		n[t.Status]++
	}
	return fmt.Sprintf("charged:%d declined:%d duplicate:%d refused:%d",
		n[store.TapCharged], n[store.TapDeclined], n[StatusDuplicate], n[store.TapRefused])
}

// Taps prices and posts taps. One message's taps are one ledger op.
func (s *Service) Taps(ctx context.Context, operator string, taps []tap.Tap) (*Result, error) {
	if len(taps) == 0 {
		return &Result{}, nil
	}
	op := &tapsOp{s: s, taps: taps, now: s.opts.Now()}
	out, err := s.eng.Submit(ctx, op, ledger.SubmitOptions{
		Audit: &store.AuditEntry{Operator: operator, Role: "plugin", Action: "transit.taps",
			Target: taps[0].Device + "/" + strconv.FormatInt(taps[0].Seq, 10)},
	})
	if err != nil {
		return nil, err
	}
	return out.Result.(*Result), nil
}

// tapsOp posts one batch of taps.
type tapsOp struct {
	s    *Service
	taps []tap.Tap
	now  time.Time
}

func (o *tapsOp) Prefetch(k *ledger.Keys) {
	for _, t := range o.taps {
		k.Devices = append(k.Devices, t.Device)
		k.Taps = append(k.Taps, store.TapKey{Device: t.Device, Seq: t.Seq})
		k.Card(t.Card)
		k.Riders = append(k.Riders, t.Card)
	}
	for _, m := range o.s.opts.Merchants {
		k.Account(cards.MerchantCode(m))
	}
}

// charge is one tap decided to be charged (or refunded), waiting for its
// operator's transfer: rec.Fare is positive to debit the rider, negative
// for a refund.
type charge struct {
	i        int
	rec      store.TapRecord
	operator string
}

func (o *tapsOp) Apply(tx *ledger.Tx) (any, error) {
	res := &Result{Results: make([]TapResult, len(o.taps))}
	// Each device's highest sequence number before this batch, for gaps;
	// only devices whose taps can be trusted count.
	last := map[string]int64{}
	for _, t := range o.taps {
		if d, ok := tx.Device(t.Device); ok {
			last[t.Device] = d.LastSeq
		}
	}
	// Debits decided in this batch and not yet posted, per purse account,
	// so two taps of one card in one batch see each other.
	held := map[string]int64{}
	var charges []charge
	products := map[string]catalog.Product{}
	// Which taps the device is known to have made: stored ones and
	// duplicates of stored ones; a tap refused before its device and MAC
	// were trusted fills no number.
	made := make([]bool, len(o.taps))
	for i, t := range o.taps {
		r := &res.Results[i]
		r.Device, r.Seq = t.Device, t.Seq
		rec, ok := o.tap(tx, t, r, held, products)
		made[i] = ok || r.Status == StatusDuplicate
		if !ok {
			continue
		}
		if rec.Status == store.TapCharged {
			d, _ := tx.Device(t.Device)
			charges = append(charges, charge{i: i, rec: rec, operator: d.Operator})
			continue
		}
		o.record(tx, rec, r)
	}
	// One transfer per operator: each rider's purse debited, the operator's
	// merchant account credited once.
	byOp := map[string][]charge{}
	var ops []string
	for _, c := range charges {
		if _, ok := byOp[c.operator]; !ok {
			ops = append(ops, c.operator)
		}
		byOp[c.operator] = append(byOp[c.operator], c)
	}
	sort.Strings(ops)
	for _, opName := range ops {
		cs := byOp[opName]
		id, err := o.post(tx, opName, cs)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			c.rec.Transfer = id
			if id != 0 {
				res.Results[c.i].Transfer = strconv.FormatInt(id, 10)
			}
			o.record(tx, c.rec, &res.Results[c.i])
		}
	}
	// The deny list follows every card this batch charged.
	seen := map[string]bool{}
	for _, c := range charges {
		if seen[c.rec.Card] {
			continue
		}
		seen[c.rec.Card] = true
		card, _ := tx.Card(c.rec.Card)
		cards.SyncDenyList(tx, card, products[card.Product])
	}
	for i := range res.Results {
		if res.Results[i].Status == store.TapCharged {
			_, res.Results[i].Denied = tx.Denied(o.taps[i].Card)
		}
	}
	for dev := range last {
		if d, ok := tx.Device(dev); !ok || d.LastSeq == last[dev] {
			// Nothing of this device was stored (every tap refused as
			// untrusted): say nothing about its numbering.
			delete(last, dev)
		}
	}
	res.Gaps = o.gaps(last, made)
	res.DenylistVersion = tx.DenyVersion()
	return res, nil
}

// tap decides one tap. It answers r and returns the record to store, with
// ok false for a tap that is not stored: one whose device or MAC cannot be
// trusted (storing it would let a forger block the real tap of that
// number), and duplicates.
func (o *tapsOp) tap(tx *ledger.Tx, t tap.Tap, r *TapResult, held map[string]int64, products map[string]catalog.Product) (store.TapRecord, bool) {
	s := o.s
	refuse := func(code string) { r.Status, r.Reason = store.TapRefused, code }
	if _, err := tap.Check(t); err != nil {
		refuse(fault.InvalidRequest)
		return store.TapRecord{}, false
	}
	d, ok := tx.Device(t.Device)
	if !ok || d.Status != store.DeviceActive {
		refuse(fault.DeviceUnknown)
		return store.TapRecord{}, false
	}
	if !tap.Verify(d.Key, t) {
		refuse(fault.MacInvalid)
		s.opts.Logger.Warn("transit: tap refused: its MAC does not match; forged or altered", "device", t.Device, "seq", t.Seq)
		return store.TapRecord{}, false
	}
	if prev, ok := tx.Tap(store.TapKey{Device: t.Device, Seq: t.Seq}); ok {
		*r = TapResult{Device: t.Device, Seq: t.Seq, Status: StatusDuplicate, Reason: prev.Reason, Fare: prev.Fare,
			Balance: prev.Balance}
		if prev.Transfer != 0 {
			r.Transfer = strconv.FormatInt(prev.Transfer, 10)
		}
		return store.TapRecord{}, false
	}
	rec := store.TapRecord{Device: t.Device, Seq: t.Seq, Card: t.Card, At: t.At.UTC().Truncate(time.Microsecond),
		Kind: t.Kind, Route: t.Route, Stop: t.Stop, Offline: t.Offline}
	decline := func(status, code string) (store.TapRecord, bool) {
		rec.Status, rec.Reason = status, code
		return rec, true
	}
	switch {
	case t.At.After(o.now.Add(s.opts.MaxSkew)):
		return decline(store.TapRefused, fault.TapInFuture)
	case t.At.Before(o.now.Add(-s.opts.MaxAge)):
		return decline(store.TapRefused, fault.TapTooOld)
	}
	card, ok := tx.Card(t.Card)
	if !ok {
		if !strings.HasPrefix(t.Card, s.opts.IssuerPrefix) {
			// A bank card held to a validator: transit takes the city card
			// only.
			return decline(store.TapDeclined, fault.ChannelNotAllowed)
		}
		return decline(store.TapDeclined, fault.CardNotFound)
	}
	p, ok := s.cat.Product(card.Product)
	if !ok {
		return decline(store.TapDeclined, fault.ProductNotFound)
	}
	products[card.Product] = p
	switch card.Status {
	case store.CardClosed, store.CardReplaced:
		// Not even an offline ride can be charged to a card whose balance
		// has gone: reported, not posted.
		return decline(store.TapDeclined, fault.CardClosed)
	case store.CardLost, store.CardFrozen:
		if !t.Offline {
			return decline(store.TapDeclined, statusCode(card.Status))
		}
	}
	if why, denied := tx.Denied(t.Card); denied && !t.Offline {
		if why.Reason == cards.DenyDebt {
			return decline(store.TapDeclined, fault.InsufficientFunds)
		}
		return decline(store.TapDeclined, fault.Denylisted)
	}
	var state fares.RiderState
	if raw := tx.RiderState(t.Card); raw != nil {
		if err := json.Unmarshal(raw, &state); err != nil {
			state = fares.RiderState{}
		}
	}
	state.Category = p.Concession
	q, next, err := s.opts.Fares.Price(state, fares.Tap{At: t.At, Kind: t.Kind, Operator: d.Operator, Route: t.Route, Stop: t.Stop})
	if err != nil {
		return decline(store.TapRefused, fault.InvalidRequest)
	}
	amount := q.Charge - q.Refund
	code := cards.PurseCode(t.Card, s.purse)
	acc := tx.Account(code)
	if acc == nil {
		return decline(store.TapDeclined, fault.PurseNotAllowed)
	}
	if amount > 0 {
		room := ledger.Available(*acc) - held[code]
		if t.Offline {
			// First-ride risk: the validator let the rider on; the purse may
			// go below zero down to its limit, and the debt is recovered from
			// the next top-up.
			room += acc.NegativeLimit
		}
		if room < amount {
			return decline(store.TapDeclined, fault.InsufficientFunds)
		}
	}
	held[code] += amount
	raw, err := json.Marshal(next)
	if err != nil {
		return decline(store.TapRefused, fault.Internal)
	}
	tx.PutRiderState(t.Card, raw)
	rec.Status, rec.Fare = store.TapCharged, amount
	rec.Balance = ledger.Balance(*acc) - held[code]
	return rec, true
}

func statusCode(status string) string {
	if status == store.CardLost {
		return fault.CardLost
	}
	return fault.CardFrozen
}

// post writes one operator's transfer for its charged taps and returns its
// id; 0 when the charges net to nothing (free rides, capped rides).
func (o *tapsOp) post(tx *ledger.Tx, operator string, cs []charge) (int64, error) {
	perPurse := map[string]int64{}
	var order []string
	var total int64
	for _, c := range cs {
		code := cards.PurseCode(c.rec.Card, o.s.purse)
		if _, ok := perPurse[code]; !ok {
			order = append(order, code)
		}
		perPurse[code] += c.rec.Fare
		total += c.rec.Fare
	}
	var entries []store.Entry
	for _, code := range order {
		if amt := perPurse[code]; amt != 0 {
			entries = append(entries, store.Entry{Account: tx.Account(code).ID, Amount: amt})
		}
	}
	if len(entries) == 0 {
		return 0, nil
	}
	cur := o.s.opts.Fares.Currency()
	if total != 0 {
		// When debits and refunds cancel out, the purses' entries balance
		// by themselves and the merchant is not touched.
		merchant := cards.MerchantAccount(tx, o.s.opts.Merchants[operator], cur)
		entries = append(entries, store.Entry{Account: merchant.ID, Amount: -total})
	}
	card := ""
	if len(order) == 1 {
		card = cs[0].rec.Card
	}
	id, err := tx.Post(store.Transfer{Kind: TransferFares, Currency: cur, Card: card, Channel: Channel,
		Merchant: o.s.opts.Merchants[operator], Memo: fmt.Sprintf("%d taps", len(cs)), Entries: entries}, time.Time{})
	if err != nil {
		// The checks above leave every purse within its limit; a refusal
		// here means the writer's state is not what the op saw.
		return 0, fmt.Errorf("transit: post %s fares: %w", operator, err)
	}
	return id, nil
}

// record stores a decided tap and answers it.
func (o *tapsOp) record(tx *ledger.Tx, rec store.TapRecord, r *TapResult) {
	tx.PutTap(rec)
	tx.SawSeq(rec.Device, rec.Seq)
	r.Status, r.Reason, r.Fare, r.Balance = rec.Status, rec.Reason, rec.Fare, rec.Balance
}

// gaps lists, per device of the batch, the runs of sequence numbers above
// the highest heard from it before the batch (last) and below the highest
// in the batch that the batch does not hold. A run reported once is not
// reported again: the device's highest number moves past it, and a late
// upload that fills it is simply posted.
func (o *tapsOp) gaps(last map[string]int64, made []bool) []Gap {
	byDev := map[string][]int64{}
	for i, t := range o.taps {
		// Only taps the device is known to have made count: a forged one
		// fills no number.
		if made[i] {
			byDev[t.Device] = append(byDev[t.Device], t.Seq)
		}
	}
	devs := make([]string, 0, len(byDev))
	for d := range byDev {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	var out []Gap
	for _, dev := range devs {
		seqs := byDev[dev]
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		next := last[dev] + 1
		for _, q := range seqs {
			if q < next {
				continue
			}
			if q > next {
				out = append(out, Gap{Device: dev, From: next, To: q - 1})
			}
			next = q + 1
		}
	}
	return out
}

// DenyListView is the deny list as validators download it: whole (Full,
// Cards), or the changes after version Since (Add, Remove).
type DenyListView struct {
	Version int64    `json:"version"`
	Size    int      `json:"size"`
	Full    bool     `json:"full,omitempty"`
	Cards   []string `json:"cards,omitempty"`
	Since   int64    `json:"since,omitempty"`
	Add     []string `json:"add,omitempty"`
	Remove  []string `json:"remove,omitempty"`
}

// MaxIncremental is how many changes an incremental download may span;
// a validator further behind gets the whole list.
const MaxIncremental = 50_000

// refresh brings the cached list up to the store's version.
func (s *Service) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deny.cards == nil {
		v, cs, err := s.st.DenyList(ctx)
		if err != nil {
			return err
		}
		s.deny = denyCache{version: v, cards: make(map[string]string, len(cs))}
		for _, c := range cs {
			s.deny.cards[c.Card] = c.Reason
		}
		return nil
	}
	for {
		chs, err := s.st.DenyChangesSince(ctx, s.deny.version, 10_000)
		if err != nil {
			return err
		}
		for _, c := range chs {
			if c.Add {
				s.deny.cards[c.Card] = c.Reason
			} else {
				delete(s.deny.cards, c.Card)
			}
			s.deny.version = c.Version
		}
		if len(chs) < 10_000 {
			return nil
		}
	}
}

// DenyList returns the whole list when since is 0 (or too far behind),
// otherwise the cards added and removed after version since.
func (s *Service) DenyList(ctx context.Context, since int64) (DenyListView, error) {
	if since < 0 {
		return DenyListView{}, fault.E(fault.InvalidRequest, "since", "since is a deny list version, 0 or more")
	}
	if err := s.refresh(ctx); err != nil {
		return DenyListView{}, fault.Wrap(fault.Unavailable, err)
	}
	s.mu.Lock()
	v := DenyListView{Version: s.deny.version, Size: len(s.deny.cards)}
	if since == 0 || since > v.Version || v.Version-since > MaxIncremental {
		v.Full = true
		v.Cards = make([]string, 0, len(s.deny.cards))
		for c := range s.deny.cards {
			v.Cards = append(v.Cards, c)
		}
		s.mu.Unlock()
		sort.Strings(v.Cards)
		return v, nil
	}
	s.mu.Unlock()
	chs, err := s.st.DenyChangesSince(ctx, since, int(v.Version-since))
	if err != nil {
		return DenyListView{}, fault.Wrap(fault.Unavailable, err)
	}
	final := map[string]bool{}
	for _, c := range chs {
		if c.Version > v.Version {
			break
		}
		final[c.Card] = c.Add
	}
	v.Since, v.Add, v.Remove = since, []string{}, []string{}
	for c, add := range final {
		if add {
			v.Add = append(v.Add, c)
		} else {
			v.Remove = append(v.Remove, c)
		}
	}
	sort.Strings(v.Add)
	sort.Strings(v.Remove)
	return v, nil
}

// DeviceTaps lists a device's taps after sequence number after.
func (s *Service) DeviceTaps(ctx context.Context, device string, after int64, limit int) ([]store.TapRecord, error) {
	if _, err := s.st.GetDevice(ctx, device); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fault.E(fault.DeviceUnknown, "id", fmt.Sprintf("no device %s", device))
		}
		return nil, fault.Wrap(fault.Unavailable, err)
	}
	ts, err := s.st.DeviceTaps(ctx, device, after, limit)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err)
	}
	return ts, nil
}
