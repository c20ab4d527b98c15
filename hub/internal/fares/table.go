// Package fares prices transit taps from fare tables kept as data
// (channels/transit, schema schemas/transit-fares.json). Pricing is pure and
// deterministic: Price takes a card's RiderState and one Tap and returns what
// to charge or refund, line by line, and the card's next state. The hub keeps
// the state per card; nothing here touches a clock, a store or the network.
// The README beside this file states the rules and their order.
package fares

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // caps count days in the network's zone; do not depend on the host's zoneinfo

	"github.com/citycard/citycard/channels"
	"github.com/citycard/citycard/schemas"
)

// Schema is the schema every fare document must satisfy.
const Schema = "transit-fares"

// Keywords of the violations found by the checks the schema cannot express.
// They appear in schemas.Violation.Keyword beside the schema's own.
const (
	KeywordDuplicate       = "duplicate"       // a network, operator, route, stop or stop pair appears twice
	KeywordMissing         = "missing"         // no network document among the files
	KeywordNetwork         = "network"         // an operator names a network that is not loaded
	KeywordCurrency        = "currency"        // an operator's currency differs from its network's
	KeywordTimeZone        = "timeZone"        // the time zone is not a known IANA zone
	KeywordOrder           = "order"           // bands or stop distances not ascending
	KeywordCoverage        = "coverage"        // the bands do not reach the end of the route
	KeywordMaxFare         = "maxFare"         // a fare of the route is above its max_fare
	KeywordUnknownStop     = "unknownStop"     // a table fare names a stop not in its stops
	KeywordUnknownOperator = "unknownOperator" // a transfer rule names an operator not loaded
)

// File is one fare document and the name it is reported under.
type File struct {
	Name string
	Data []byte
}

// LoadError reports what is wrong with one fare document: the file and, for
// each fault, the JSON pointer to it.
type LoadError struct {
	File       string
	Violations []schemas.Violation
}

// Error lists every fault: "fares: city-bus.json: /routes/0/fare/amount: minimum: ...; /...".
func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fares: %s: ", e.File)
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	return b.String()
}

// Table is a loaded fare network: its rules and its operators' routes. It is
// immutable and safe for concurrent use.
type Table struct {
	network   string
	currency  string
	loc       *time.Location
	maxRide   int64 // seconds
	transfer  *transferRule
	caps      caps
	conc      map[string]concession
	operators map[string]*operator
}

type caps struct{ daily, weekly int64 } // -1: none

type concession struct {
	pct  int64
	caps caps
}

type transferRule struct {
	discount     int64
	window       int64 // seconds
	fromStart    bool  // measured from the journey's first tap-on, not the previous tap
	maxTransfers int
	modes        []string
	operators    []string
	sameRoute    bool
}

type operator struct {
	id     string
	mode   string
	routes map[string]*route
}

type fareKind uint8

const (
	fareFlat fareKind = iota
	fareStops
	fareKm
	fareZones
	fareTable
)

type band struct{ upTo, amount int64 }

type route struct {
	id      string
	kind    fareKind
	amount  int64            // flat
	maxFare int64            // the others: held at tap-on
	stops   map[string]int64 // stops: index; km: metres; zones: zone; table: index
	bands   []band
	prices  []int64            // zones: by number of zones, from 1
	pairs   map[[2]int64]int64 // table: by stop indexes, lower first
}

// needsTapOff reports whether the route charges its max fare at tap-on and
// settles at tap-off.
func (r *route) needsTapOff() bool { return r.kind != fareFlat }

// fare is the fare of a ride from stop a to stop b; both are known stops.
func (r *route) fare(a, b string) int64 {
	x, y := r.stops[a], r.stops[b]
	if x > y {
		x, y = y, x
	}
	switch r.kind {
	case fareStops:
		return bandFare(r.bands, y-x)
	case fareKm:
		return bandFare(r.bands, (y-x+999)/1000)
	case fareZones:
		n := y - x // zones touched, less one
		if n >= int64(len(r.prices)) {
			n = int64(len(r.prices)) - 1
		}
		return r.prices[n]
	case fareTable:
		if f, ok := r.pairs[[2]int64{x, y}]; ok {
			return f
		}
		return r.maxFare
	}
	return r.amount
}

// bandFare is the amount of the first band reaching n; Load proves one does.
func bandFare(bands []band, n int64) int64 {
	for _, b := range bands {
		if n <= b.upTo {
			return b.amount
		}
	}
	return bands[len(bands)-1].amount
}

// Network is the network's identifier.
func (t *Table) Network() string { return t.network }

// Currency is the ISO 4217 code of every amount the table quotes.
func (t *Table) Currency() string { return t.currency }

// Location is the time zone in which days and weeks are counted for caps.
func (t *Table) Location() *time.Location { return t.loc }

// MaxFare is the most one ride on the route can cost before any concession,
// transfer discount or cap: its flat fare or its max_fare.
func (t *Table) MaxFare(operator, route string) (int64, bool) {
	op, ok := t.operators[operator]
	if !ok {
		return 0, false
	}
	r, ok := op.routes[route]
	if !ok {
		return 0, false
	}
	if r.kind == fareFlat {
		return r.amount, true
	}
	return r.maxFare, true
}

// Default loads the fare tables embedded from channels/transit.
func Default() (*Table, error) {
	sub, err := fs.Sub(channels.TransitFiles, "transit")
	if err != nil {
		return nil, err
	}
	return LoadFS(sub)
}

// LoadFS loads every *.json at the root of fsys, in name order.
func LoadFS(fsys fs.FS) (*Table, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(names))
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("fares: %w", err)
		}
		files = append(files, File{Name: n, Data: b})
	}
	return Load(files...)
}

// Load builds a table from one network document and the documents of its
// operators. Each document must satisfy schemas/transit-fares.json and the
// rules beyond it (see the Keyword constants). Every fault of every file is
// reported: the error joins one *LoadError per faulty file, each naming the
// file and the JSON pointer of each fault.
func Load(files ...File) (*Table, error) {
	var (
		errs     []error
		netFile  string
		net      *networkDoc
		ops      []operatorDoc
		opFiles  []string
		netCount int
	)
	for _, f := range files {
		kind, err := parseKind(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch kind {
		case "network":
			var d networkDoc
			if err := decode(f, &d); err != nil {
				errs = append(errs, err)
				continue
			}
			netCount++
			if net != nil {
				errs = append(errs, fault(f.Name, "/network", KeywordDuplicate,
					fmt.Sprintf("a second network document; %s already defines network %q", netFile, net.Network)))
				continue
			}
			net, netFile = &d, f.Name
		default:
			var d operatorDoc
			if err := decode(f, &d); err != nil {
				errs = append(errs, err)
				continue
			}
			ops = append(ops, d)
			opFiles = append(opFiles, f.Name)
		}
	}
	if net == nil {
		if netCount == 0 && len(errs) == 0 {
			errs = append(errs, fault("", "", KeywordMissing, "no network document (kind \"network\") among the files"))
		}
		return nil, errors.Join(errs...)
	}
	t, vs := buildNetwork(net)
	if len(vs) > 0 {
		errs = append(errs, &LoadError{File: netFile, Violations: vs})
	}
	t.operators = make(map[string]*operator, len(ops))
	opFile := map[string]string{}
	for i, d := range ops {
		op, vs := buildOperator(&d, net)
		if prev, dup := opFile[d.Operator]; dup {
			vs = append(vs, schemas.Violation{InstancePath: "/operator", Keyword: KeywordDuplicate,
				Message: fmt.Sprintf("operator %q is also defined in %s", d.Operator, prev)})
		}
		if len(vs) > 0 {
			errs = append(errs, &LoadError{File: opFiles[i], Violations: sorted(vs)})
			continue
		}
		opFile[d.Operator] = opFiles[i]
		t.operators[op.id] = op
	}
	if t.transfer != nil {
		var vs []schemas.Violation
		for i, id := range t.transfer.operators {
			if _, ok := opFile[id]; !ok {
				vs = append(vs, schemas.Violation{InstancePath: "/transfer/operators/" + strconv.Itoa(i),
					Keyword: KeywordUnknownOperator, Message: fmt.Sprintf("no operator %q is loaded", id)})
			}
		}
		if len(vs) > 0 {
			errs = append(errs, &LoadError{File: netFile, Violations: vs})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func fault(file, pointer, keyword, msg string) *LoadError {
	return &LoadError{File: file, Violations: []schemas.Violation{{InstancePath: pointer, Keyword: keyword, Message: msg}}}
}

func sorted(vs []schemas.Violation) []schemas.Violation {
	slices.SortStableFunc(vs, func(a, b schemas.Violation) int { return cmp.Compare(a.InstancePath, b.InstancePath) })
	return vs
}

// parseKind validates the document against the schema and says which kind it is.
func parseKind(f File) (string, error) {
	if err := schemas.Validate(Schema, f.Data); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			return "", &LoadError{File: f.Name, Violations: ve.Violations}
		}
		return "", fmt.Errorf("fares: %s: %w", f.Name, err)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(f.Data, &head); err != nil {
		return "", fmt.Errorf("fares: %s: %w", f.Name, err)
	}
	return head.Kind, nil
}

// decode reads a document the schema accepted, refusing what Go cannot hold
// exactly (the schema admits 2e3 as an integer; int64 fields do not).
func decode(f File, v any) error {
	d := json.NewDecoder(bytes.NewReader(f.Data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fault(f.Name, "/"+strings.ReplaceAll(te.Field, ".", "/"), "type",
				fmt.Sprintf("expected %s, got %s; write integers without a fraction or exponent", te.Type, te.Value))
		}
		return fmt.Errorf("fares: %s: %w", f.Name, err)
	}
	return nil
}

type networkDoc struct {
	Kind           string `json:"kind"`
	Network        string `json:"network"`
	Name           string `json:"name"`
	Currency       string `json:"currency"`
	TimeZone       string `json:"time_zone"`
	MaxRideMinutes int64  `json:"max_ride_minutes"`
	Transfer       *struct {
		Discount      int64    `json:"discount"`
		WindowMinutes int64    `json:"window_minutes"`
		MeasuredFrom  string   `json:"measured_from"`
		MaxTransfers  int      `json:"max_transfers"`
		Modes         []string `json:"modes"`
		Operators     []string `json:"operators"`
		SameRoute     bool     `json:"same_route"`
	} `json:"transfer"`
	Caps        *capsDoc `json:"caps"`
	Concessions map[string]struct {
		PayPercent int64    `json:"pay_percent"`
		Caps       *capsDoc `json:"caps"`
	} `json:"concessions"`
}

type capsDoc struct {
	Daily  int64 `json:"daily"`
	Weekly int64 `json:"weekly"`
}

func (c *capsDoc) caps() caps {
	out := caps{-1, -1}
	if c == nil {
		return out
	}
	if c.Daily > 0 {
		out.daily = c.Daily
	}
	if c.Weekly > 0 {
		out.weekly = c.Weekly
	}
	return out
}

func buildNetwork(d *networkDoc) (*Table, []schemas.Violation) {
	var vs []schemas.Violation
	t := &Table{network: d.Network, currency: d.Currency, maxRide: 180 * 60, caps: d.Caps.caps()}
	if d.MaxRideMinutes > 0 {
		t.maxRide = d.MaxRideMinutes * 60
	}
	loc, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		vs = append(vs, schemas.Violation{InstancePath: "/time_zone", Keyword: KeywordTimeZone,
			Message: fmt.Sprintf("%q is not a known time zone", d.TimeZone)})
		loc = time.UTC
	}
	t.loc = loc
	if tr := d.Transfer; tr != nil {
		t.transfer = &transferRule{
			discount: tr.Discount, window: tr.WindowMinutes * 60, fromStart: tr.MeasuredFrom == "journey_start",
			maxTransfers: tr.MaxTransfers, modes: tr.Modes, operators: tr.Operators, sameRoute: tr.SameRoute,
		}
	}
	t.conc = make(map[string]concession, len(d.Concessions))
	for name, c := range d.Concessions {
		cc := concession{pct: c.PayPercent}
		if c.Caps != nil {
			cc.caps = c.Caps.caps()
		} else {
			cc.caps = caps{scale(t.caps.daily, c.PayPercent), scale(t.caps.weekly, c.PayPercent)}
		}
		t.conc[name] = cc
	}
	return t, vs
}

// scale takes pct per cent of a cap, rounded down; no cap stays none.
func scale(capAmount, pct int64) int64 {
	if capAmount < 0 {
		return capAmount
	}
	return capAmount * pct / 100
}

type operatorDoc struct {
	Kind     string `json:"kind"`
	Operator string `json:"operator"`
	Name     string `json:"name"`
	Network  string `json:"network"`
	Mode     string `json:"mode"`
	Currency string `json:"currency"`
	Routes   []struct {
		Route string  `json:"route"`
		Name  string  `json:"name"`
		Fare  fareDoc `json:"fare"`
	} `json:"routes"`
}

type fareDoc struct {
	Type    string          `json:"type"`
	Amount  int64           `json:"amount"`
	Stops   json.RawMessage `json:"stops"`
	RawBand []struct {
		UpTo   int64 `json:"up_to"`
		Amount int64 `json:"amount"`
	} `json:"bands"`
	Prices []int64 `json:"prices"`
	Fares  []struct {
		Between []string `json:"between"`
		Amount  int64    `json:"amount"`
	} `json:"fares"`
	MaxFare int64 `json:"max_fare"`
}

func buildOperator(d *operatorDoc, net *networkDoc) (*operator, []schemas.Violation) {
	var vs []schemas.Violation
	if d.Network != net.Network {
		vs = append(vs, schemas.Violation{InstancePath: "/network", Keyword: KeywordNetwork,
			Message: fmt.Sprintf("network %q is not loaded; the network is %q", d.Network, net.Network)})
	}
	if d.Currency != net.Currency {
		vs = append(vs, schemas.Violation{InstancePath: "/currency", Keyword: KeywordCurrency,
			Message: fmt.Sprintf("%s differs from the network's %s", d.Currency, net.Currency)})
	}
	op := &operator{id: d.Operator, mode: d.Mode, routes: make(map[string]*route, len(d.Routes))}
	for i, rd := range d.Routes {
		at := "/routes/" + strconv.Itoa(i)
		if _, dup := op.routes[rd.Route]; dup {
			vs = append(vs, schemas.Violation{InstancePath: at + "/route", Keyword: KeywordDuplicate,
				Message: fmt.Sprintf("route %q appears twice", rd.Route)})
			continue
		}
		r, rvs := buildRoute(rd.Route, &rd.Fare, at+"/fare")
		vs = append(vs, rvs...)
		op.routes[rd.Route] = r
	}
	return op, vs
}

func buildRoute(id string, f *fareDoc, at string) (*route, []schemas.Violation) {
	var vs []schemas.Violation
	bad := func(p, kw, msg string, args ...any) {
		vs = append(vs, schemas.Violation{InstancePath: at + p, Keyword: kw, Message: fmt.Sprintf(msg, args...)})
	}
	r := &route{id: id, amount: f.Amount, maxFare: f.MaxFare, stops: map[string]int64{}}
	for _, b := range f.RawBand {
		r.bands = append(r.bands, band{b.UpTo, b.Amount})
	}
	for i := 1; i < len(r.bands); i++ {
		if r.bands[i].upTo <= r.bands[i-1].upTo {
			bad("/bands/"+strconv.Itoa(i)+"/up_to", KeywordOrder, "up_to must be greater than the band before's %d", r.bands[i-1].upTo)
		}
		if r.bands[i].amount < r.bands[i-1].amount {
			bad("/bands/"+strconv.Itoa(i)+"/amount", KeywordOrder, "a longer band may not cost less than a shorter one")
		}
	}
	coverage := func(length int64, unit string) {
		if len(r.bands) == 0 {
			return
		}
		last := r.bands[len(r.bands)-1]
		if last.upTo < length {
			bad("/bands/"+strconv.Itoa(len(r.bands)-1)+"/up_to", KeywordCoverage,
				"the route is %d %s long; the last band reaches %d", length, unit, last.upTo)
		}
		if m := bandFare(r.bands, length); m > r.maxFare {
			bad("/max_fare", KeywordMaxFare, "the full route costs %d, more than max_fare %d", m, r.maxFare)
		}
	}
	// named reads stops given as a list of names, each at its place in it.
	named := func() (int, bool) {
		var names []string
		if err := json.Unmarshal(f.Stops, &names); err != nil {
			bad("/stops", "type", "%v", err)
			return 0, false
		}
		for i, n := range names {
			r.stops[n] = int64(i)
		}
		return len(names), true
	}
	switch f.Type {
	case "flat":
		r.kind = fareFlat
	case "stops":
		r.kind = fareStops
		if n, ok := named(); ok {
			coverage(int64(n-1), "stops")
		}
	case "km":
		r.kind = fareKm
		var stops []struct {
			Stop   string `json:"stop"`
			Metres int64  `json:"metres"`
		}
		if err := json.Unmarshal(f.Stops, &stops); err != nil {
			bad("/stops", "type", "%v", err)
			break
		}
		for i, s := range stops {
			if _, dup := r.stops[s.Stop]; dup {
				bad("/stops/"+strconv.Itoa(i)+"/stop", KeywordDuplicate, "stop %q appears twice", s.Stop)
			}
			if i > 0 && s.Metres <= stops[i-1].Metres {
				bad("/stops/"+strconv.Itoa(i)+"/metres", KeywordOrder, "stops must be in route order, each further than the one before")
			}
			r.stops[s.Stop] = s.Metres
		}
		length := stops[len(stops)-1].Metres - stops[0].Metres
		coverage((length+999)/1000, "km")
	case "zones":
		r.kind = fareZones
		var zones map[string]int64
		if err := json.Unmarshal(f.Stops, &zones); err != nil {
			bad("/stops", "type", "%v", err)
			break
		}
		lo, hi := int64(1<<62), int64(0)
		for n, z := range zones {
			r.stops[n] = z
			lo, hi = min(lo, z), max(hi, z)
		}
		r.prices = f.Prices
		for i := 1; i < len(r.prices); i++ {
			if r.prices[i] < r.prices[i-1] {
				bad("/prices/"+strconv.Itoa(i), KeywordOrder, "more zones may not cost less than fewer")
			}
		}
		if n := min(hi-lo, int64(len(r.prices))-1); r.prices[n] > r.maxFare {
			bad("/max_fare", KeywordMaxFare, "a ride over %d zones costs %d, more than max_fare %d", n+1, r.prices[n], r.maxFare)
		}
	case "table":
		r.kind = fareTable
		if _, ok := named(); !ok {
			break
		}
		r.pairs = make(map[[2]int64]int64, len(f.Fares))
		for i, fr := range f.Fares {
			p := "/fares/" + strconv.Itoa(i)
			x, okx := r.stops[fr.Between[0]]
			y, oky := r.stops[fr.Between[1]]
			if !okx || !oky {
				for j, okj := range []bool{okx, oky} {
					if !okj {
						bad(p+"/between/"+strconv.Itoa(j), KeywordUnknownStop, "stop %q is not in stops", fr.Between[j])
					}
				}
				continue
			}
			if x > y {
				x, y = y, x
			}
			if x == y {
				bad(p+"/between", KeywordDuplicate, "a fare between a stop and itself; such a ride pays max_fare")
				continue
			}
			if _, dup := r.pairs[[2]int64{x, y}]; dup {
				bad(p+"/between", KeywordDuplicate, "the fare between %s and %s is given twice", fr.Between[0], fr.Between[1])
				continue
			}
			if fr.Amount > r.maxFare {
				bad(p+"/amount", KeywordMaxFare, "%d is more than max_fare %d", fr.Amount, r.maxFare)
			}
			r.pairs[[2]int64{x, y}] = fr.Amount
		}
	}
	return r, vs
}
