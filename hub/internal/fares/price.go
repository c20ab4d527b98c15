package fares

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/citycard/citycard/hub/internal/catalog"
)

// Kinds of tap.
const (
	TapOn  = "on"
	TapOff = "off"
)

// Tap is one touch of a card on a validator.
type Tap struct {
	At       time.Time // when the card was read, by the validator's clock
	Kind     string    // TapOn or TapOff
	Operator string    // e.g. city-bus
	Route    string    // e.g. 301; the metro's zone-priced network is one route
	// Stop is where the tap happened; needed on routes priced by stops,
	// distance, zones or table, ignored on flat-fare routes. Those fares are
	// the same in both directions, so the tap needs no direction.
	Stop string
}

// RiderState is what the engine remembers about one card in one network
// between taps. The hub stores it per card and passes it back unchanged; it
// is small, serialisable as JSON, and the zero value is a card never used.
type RiderState struct {
	// Category is the card product's concession (catalog.Product.Concession):
	// "", "none", "senior", "student" or "disabled". The hub sets it before
	// each call; the engine never changes it.
	Category string `json:"category,omitempty"`
	// LastAt is the time (Unix seconds) of the latest tap priced. A tap
	// before it is late: see the README.
	LastAt int64 `json:"last_at,omitempty"`
	// Day and Week are the local day, and the Monday starting the local
	// week, as days since 1970-01-01, that DaySpent and WeekSpent count.
	Day       int32 `json:"day,omitempty"`
	DaySpent  int64 `json:"day_spent,omitempty"`
	Week      int32 `json:"week,omitempty"`
	WeekSpent int64 `json:"week_spent,omitempty"`
	// Journey is the latest journey, for transfer discounts.
	Journey Journey `json:"journey,omitzero"`
	// Open is the ride awaiting its tap-off, if any.
	Open OpenRide `json:"open,omitzero"`
}

// Journey is the latest journey: its first ride and the rides that followed
// it as transfers.
type Journey struct {
	Start     int64  `json:"start"`     // Unix seconds of the first tap-on
	Last      int64  `json:"last"`      // Unix seconds of the previous ride's last tap
	Transfers int    `json:"transfers"` // rides after the first that counted as transfers
	Operator  string `json:"operator"`  // of the previous ride
	Mode      string `json:"mode"`
	Route     string `json:"route"`
}

// OpenRide is a ride on a route that settles at tap-off: the max fare was
// charged at tap-on, and this is what is needed to refund the difference.
type OpenRide struct {
	Operator string `json:"operator"`
	Route    string `json:"route"`
	Stop     string `json:"stop"`
	At       int64  `json:"at"` // Unix seconds of the tap-on
	Day      int32  `json:"day"`
	Week     int32  `json:"week"`
	Charged  int64  `json:"charged"`  // what the tap-on charged
	Discount int64  `json:"discount"` // the transfer discount granted at tap-on, before limiting to the fare
	Room     int64  `json:"room"`     // what the caps still allowed at tap-on; -1 for no cap
}

// Quote is the engine's answer for one tap. At most one of Charge and Refund
// is non-zero, and the line amounts add up to Charge - Refund.
type Quote struct {
	Charge   int64  `json:"charge"`   // to debit now, in minor units of Currency
	Refund   int64  `json:"refund"`   // to credit now (a tap-off settling a ride)
	Currency string `json:"currency"` // the network's
	// Fare is the ride's fare before concession, transfer and caps: the
	// flat fare, the max fare held at tap-on, or the settled fare at tap-off.
	Fare     int64  `json:"fare"`
	Transfer bool   `json:"transfer,omitempty"` // the ride counted as a transfer
	Late     bool   `json:"late,omitempty"`     // the tap was older than the state
	Lines    []Line `json:"lines"`
}

// Line is one reason in a quote.
type Line struct {
	Kind   string `json:"kind"` // one of the Line* constants
	Amount int64  `json:"amount"`
}

// Line kinds, in the order they are applied.
const (
	LineFare          = "fare"            // the ride's fare (flat)
	LineMaxFare       = "max_fare"        // the route's max fare, held until tap-off
	LineConcession    = "concession"      // negative: the card's concession
	LineTransfer      = "transfer"        // negative: transfer discount
	LineDailyCap      = "daily_cap"       // negative: what the daily cap waives
	LineWeeklyCap     = "weekly_cap"      // negative: what the weekly cap waives
	LineRefund        = "refund"          // negative: at tap-off, held minus settled
	LineMissingTapOff = "missing_tap_off" // 0: the previous ride had no tap-off and keeps its max fare
	LineNoTapOn       = "no_tap_on"       // 0: a tap-off matching no open ride
	LineTapOffIgnored = "tap_off_ignored" // 0: a tap-off on a flat-fare route
)

// Errors a tap can be refused with, wrapped in *Error.
var (
	ErrInvalidTap      = errors.New("invalid tap")
	ErrUnknownOperator = errors.New("unknown operator")
	ErrUnknownRoute    = errors.New("unknown route")
	ErrUnknownStop     = errors.New("unknown stop")
	ErrUnknownCategory = errors.New("unknown concession category")
)

// CodeInvalidRequest is the schemas/errors.json code of every tap refusal:
// the tap names something the fare table does not have.
const CodeInvalidRequest = "invalid_request"

// Error is a refused tap: which field, its value and why.
type Error struct {
	Code  string // a code of schemas/errors.json
	Field string // the Tap or RiderState field at fault
	Value string
	Err   error // one of the Err* values
}

func (e *Error) Error() string { return fmt.Sprintf("fares: %s %q: %v", e.Field, e.Value, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

func refuse(field, value string, err error) *Error {
	return &Error{Code: CodeInvalidRequest, Field: field, Value: value, Err: err}
}

// Price prices one tap. It is pure: the result depends only on the table,
// st and tap, and st is not changed. On error the state is returned as it
// came and nothing is charged.
func (t *Table) Price(st RiderState, tap Tap) (Quote, RiderState, error) {
	pct, cp, err := t.concession(st.Category)
	if err != nil {
		return Quote{}, st, err
	}
	op, ok := t.operators[tap.Operator]
	if !ok {
		return Quote{}, st, refuse("operator", tap.Operator, ErrUnknownOperator)
	}
	r, ok := op.routes[tap.Route]
	if !ok {
		return Quote{}, st, refuse("route", tap.Route, ErrUnknownRoute)
	}
	if r.needsTapOff() {
		if _, ok := r.stops[tap.Stop]; !ok {
			return Quote{}, st, refuse("stop", tap.Stop, ErrUnknownStop)
		}
	}
	if tap.At.IsZero() {
		return Quote{}, st, refuse("at", "", ErrInvalidTap)
	}
	at := tap.At.Unix()
	next := st
	q := Quote{Currency: t.currency, Late: at < st.LastAt, Lines: make([]Line, 0, 4)}
	if !q.Late {
		next.LastAt = at
	}
	switch tap.Kind {
	case TapOn:
		t.tapOn(&q, &next, op, r, tap, at, pct, cp)
	case TapOff:
		t.tapOff(&q, &next, op, r, tap, at, pct)
	default:
		return Quote{}, st, refuse("kind", tap.Kind, ErrInvalidTap)
	}
	return q, next, nil
}

func (t *Table) concession(category string) (int64, caps, error) {
	switch category {
	case "", catalog.ConcessionNone:
		return 100, t.caps, nil
	case catalog.ConcessionSenior, catalog.ConcessionStudent, catalog.ConcessionDisabled:
		if c, ok := t.conc[category]; ok {
			return c.pct, c.caps, nil
		}
		// The network grants this concession nothing: full fare.
		return 100, t.caps, nil
	}
	return 0, caps{}, refuse("category", category, ErrUnknownCategory)
}

// period gives the local day and the Monday starting its week, as days
// since 1970-01-01.
func (t *Table) period(at time.Time) (day, week int32) {
	_, off := at.In(t.loc).Zone()
	s := at.Unix() + int64(off)
	d := s / 86400
	if s%86400 < 0 {
		d--
	}
	// 1970-01-01 was a Thursday: three days after a Monday.
	w := d - ((d%7 + 7 + 3) % 7)
	return int32(d), int32(w)
}

func (t *Table) tapOn(q *Quote, st *RiderState, op *operator, r *route, tap Tap, at int64, pct int64, cp caps) {
	if !q.Late && st.Open.At != 0 {
		// Boarding again without a tap-off: the open ride keeps its max fare.
		q.Lines = append(q.Lines, Line{LineMissingTapOff, 0})
		st.Open = OpenRide{}
	}
	fare, kind := r.amount, LineFare
	if r.needsTapOff() {
		fare, kind = r.maxFare, LineMaxFare
	}
	q.Fare = fare
	q.Lines = append(q.Lines, Line{kind, fare})

	pay := fare * pct / 100 // rounded down: in the rider's favour
	if pay < fare {
		q.Lines = append(q.Lines, Line{LineConcession, pay - fare})
	}

	var granted int64
	if !q.Late {
		if t.isTransfer(st.Journey, op, r, at) {
			granted = t.transfer.discount
			q.Transfer = true
			st.Journey.Transfers++
		} else {
			st.Journey = Journey{Start: at}
		}
		st.Journey.Last, st.Journey.Operator, st.Journey.Mode, st.Journey.Route = at, op.id, op.mode, r.id
	}
	if d := min(granted, pay); d > 0 {
		q.Lines = append(q.Lines, Line{LineTransfer, -d})
		pay -= d
	}

	day, week := t.period(tap.At)
	room, capKind := t.room(st, day, week, cp)
	if room >= 0 && pay > room {
		q.Lines = append(q.Lines, Line{capKind, room - pay})
		pay = room
	}
	if day == st.Day {
		st.DaySpent += pay
	}
	if week == st.Week {
		st.WeekSpent += pay
	}
	q.Charge = pay

	if r.needsTapOff() && !q.Late {
		st.Open = OpenRide{Operator: op.id, Route: r.id, Stop: tap.Stop, At: at, Day: day, Week: week,
			Charged: pay, Discount: granted, Room: room}
	}
}

// room is what the caps still allow in the tap's day and week, -1 for no
// cap, and the kind of line a reduction is reported as. It moves the state
// into a later day or week; a late tap in a day or week the state has left
// meets no cap it cannot count.
func (t *Table) room(st *RiderState, day, week int32, cp caps) (int64, string) {
	if day > st.Day {
		st.Day, st.DaySpent = day, 0
	}
	if week > st.Week {
		st.Week, st.WeekSpent = week, 0
	}
	room, kind := int64(-1), ""
	if cp.daily >= 0 && day == st.Day {
		room, kind = max(cp.daily-st.DaySpent, 0), LineDailyCap
	}
	if cp.weekly >= 0 && week == st.Week {
		if w := max(cp.weekly-st.WeekSpent, 0); room < 0 || w < room {
			room, kind = w, LineWeeklyCap
		}
	}
	return room, kind
}

// isTransfer reports whether a ride starting at at on route r continues
// journey j under the network's transfer rule.
func (t *Table) isTransfer(j Journey, op *operator, r *route, at int64) bool {
	tr := t.transfer
	if tr == nil || j.Start == 0 || j.Transfers >= tr.maxTransfers {
		return false
	}
	from := j.Last
	if tr.fromStart {
		from = j.Start
	}
	if at-from > tr.window {
		return false
	}
	if !tr.sameRoute && j.Operator == op.id && j.Route == r.id {
		return false
	}
	if tr.modes != nil && (!slices.Contains(tr.modes, j.Mode) || !slices.Contains(tr.modes, op.mode)) {
		return false
	}
	if tr.operators != nil && (!slices.Contains(tr.operators, j.Operator) || !slices.Contains(tr.operators, op.id)) {
		return false
	}
	return true
}

func (t *Table) tapOff(q *Quote, st *RiderState, op *operator, r *route, tap Tap, at int64, pct int64) {
	if !r.needsTapOff() {
		q.Lines = append(q.Lines, Line{LineTapOffIgnored, 0})
		return
	}
	o := st.Open
	if q.Late || o.At == 0 || o.Operator != op.id || o.Route != r.id || at < o.At || at-o.At > t.maxRide {
		if !q.Late && o.At != 0 && at-o.At > t.maxRide {
			st.Open = OpenRide{} // too late to settle: the max fare stands
		}
		q.Lines = append(q.Lines, Line{LineNoTapOn, 0})
		return
	}
	fare := r.fare(o.Stop, tap.Stop)
	pay := fare * pct / 100
	pay -= min(o.Discount, pay)
	if o.Room >= 0 {
		pay = min(pay, o.Room)
	}
	refund := o.Charged - pay
	if refund < 0 {
		// Fares are monotone in the held fare, so this cannot happen; never
		// charge more at tap-off than was held.
		refund = 0
	}
	q.Fare, q.Refund = fare, refund
	q.Lines = append(q.Lines, Line{LineRefund, -refund})
	if o.Day == st.Day {
		st.DaySpent -= refund
	}
	if o.Week == st.Week {
		st.WeekSpent -= refund
	}
	if !t.transferFromStart() {
		st.Journey.Last = at
	}
	st.Open = OpenRide{}
}

func (t *Table) transferFromStart() bool { return t.transfer != nil && t.transfer.fromStart }

// PriceBatch prices a batch of taps of one card, such as a validator's
// offline upload, in tap-time order (taps at the same time keep their order
// in the batch). quotes[i] and errs[i] answer taps[i]; a refused tap changes
// nothing and does not stop the batch.
func (t *Table) PriceBatch(st RiderState, taps []Tap) (quotes []Quote, errs []error, next RiderState) {
	order := make([]int, len(taps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return taps[a].At.Compare(taps[b].At) })
	quotes, errs = make([]Quote, len(taps)), make([]error, len(taps))
	for _, i := range order {
		quotes[i], st, errs[i] = t.Price(st, taps[i])
	}
	return quotes, errs, st
}
