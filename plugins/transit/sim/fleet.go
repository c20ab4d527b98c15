package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// FleetConfig sets up a Fleet.
type FleetConfig struct {
	// URL is the front end's base URL, "http://host:port".
	URL string
	// Validators is how many validators to run.
	Validators int
	// Prefix starts every device id ("BUS" makes BUS-0001, …); "SIM" if empty.
	Prefix string
	// Keys registers a device with the hub and returns its key: in tests a
	// key made locally and given to a fake hub, in the demo the hub's API.
	Keys func(ctx context.Context, d Device) ([]byte, error)
	// Cards are the cards riders tap, chosen at random.
	Cards []string
	// TapEvery is each validator's mean time between taps (default 100 ms);
	// UploadEvery between uploads of its queue (default 1 s); PollEvery
	// between deny list downloads (default 30 s).
	TapEvery, UploadEvery, PollEvery time.Duration
	// Deadline is the online deadline (DefaultDeadline if zero).
	Deadline time.Duration
	// Seed makes the riders' choices repeatable.
	Seed uint64
}

// Fleet is many validators run at once against one front end, sharing one
// HTTP transport (as validators behind one depot gateway would) and one
// set of counters.
type Fleet struct {
	cfg        FleetConfig
	validators []*Validator
	counters   *Counters
	link       *link
	transport  *http.Transport
}

// Operators and routes the fleet's validators are spread over: the city's
// bus routes and metro lines (channels/transit).
var fleetRoutes = []struct {
	operator, mode, route string
	stops                 []string
}{
	{"city-bus", "bus", "1", nil},
	{"city-bus", "bus", "15", nil},
	{"city-bus", "bus", "27", nil},
	{"city-bus", "bus", "301", []string{"S01", "S04", "S07", "S10", "S13", "S16"}},
	{"metro", "metro", "metro", []string{"M01", "M03", "M05", "M08", "M10"}},
}

// NewFleet registers cfg.Validators devices through cfg.Keys and returns
// the fleet, not yet running.
func NewFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.Validators <= 0 || cfg.Keys == nil || len(cfg.Cards) == 0 {
		return nil, errors.New("sim: a fleet needs validators, a way to get their keys, and cards")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "SIM"
	}
	if cfg.TapEvery <= 0 {
		cfg.TapEvery = 100 * time.Millisecond
	}
	if cfg.UploadEvery <= 0 {
		cfg.UploadEvery = time.Second
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 30 * time.Second
	}
	tr := &http.Transport{MaxIdleConns: 2 * cfg.Validators, MaxIdleConnsPerHost: 2 * cfg.Validators, IdleConnTimeout: time.Minute}
	l := &link{next: tr}
	f := &Fleet{cfg: cfg, counters: &Counters{}, link: l, transport: tr}
	client := NewClient(cfg.URL, &http.Client{Transport: l})
	for i := range cfg.Validators {
		r := fleetRoutes[i%len(fleetRoutes)]
		d := Device{ID: fmt.Sprintf("%s-%04d", cfg.Prefix, i+1), Operator: r.operator, Mode: r.mode, Route: r.route}
		key, err := cfg.Keys(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("sim: registering %s: %w", d.ID, err)
		}
		v, err := NewValidator(Config{Device: d, Key: key, Stops: r.stops, Client: client, Deadline: cfg.Deadline,
			Counters: f.counters, Seed: cfg.Seed + uint64(i)})
		if err != nil {
			return nil, err
		}
		f.validators = append(f.validators, v)
	}
	return f, nil
}

// Validators returns the fleet's validators.
func (f *Fleet) Validators() []*Validator { return f.validators }

// Counts returns the fleet's counters.
func (f *Fleet) Counts() Counts { return f.counters.Snapshot() }

// SetLink cuts (false) or restores (true) every validator's link to the
// front end: requests fail at once, as with no radio.
func (f *Fleet) SetLink(up bool) { f.link.down.Store(!up) }

// Close releases the fleet's idle connections.
func (f *Fleet) Close() { f.transport.CloseIdleConnections() }

// PollDenylist has every validator download the deny list once, and
// returns the first error.
func (f *Fleet) PollDenylist(ctx context.Context) error {
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, v := range f.validators {
		wg.Go(func() {
			if err := v.PollDenylist(ctx, 0); err != nil {
				mu.Lock()
				first = cmpErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Run runs every validator for d (or until ctx ends): riders tap at random
// intervals around TapEvery, queues are uploaded every UploadEvery, the
// deny list is downloaded every PollEvery. Taps still queued at the end
// stay queued: Drain uploads them.
func (f *Fleet) Run(ctx context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for i, v := range f.validators {
		r := rand.New(rand.NewPCG(f.cfg.Seed+uint64(i), 0xf1ee7))
		wg.Go(func() { f.runOne(ctx, v, r) })
	}
	wg.Wait()
}

func (f *Fleet) runOne(ctx context.Context, v *Validator, r *rand.Rand) {
	jitter := func(d time.Duration) time.Duration { return d/2 + time.Duration(r.Int64N(int64(d))) }
	now := time.Now()
	nextTap, nextUpload, nextPoll := now.Add(jitter(f.cfg.TapEvery)), now.Add(jitter(f.cfg.UploadEvery)), now.Add(jitter(f.cfg.PollEvery))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := min(nextTap.UnixNano(), nextUpload.UnixNano(), nextPoll.UnixNano())
		timer.Reset(time.Until(time.Unix(0, next)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(nextTap) {
			v.Tap(ctx, f.cfg.Cards[r.IntN(len(f.cfg.Cards))])
			nextTap = now.Add(jitter(f.cfg.TapEvery))
		}
		if !now.Before(nextUpload) {
			if v.Queued() > 0 {
				_, _ = v.Upload(ctx)
			}
			nextUpload = now.Add(jitter(f.cfg.UploadEvery))
		}
		if !now.Before(nextPoll) {
			_ = v.PollDenylist(ctx, 0)
			nextPoll = now.Add(jitter(f.cfg.PollEvery))
		}
	}
}

// Drain uploads every validator's queue until all are empty, retrying
// every 100 ms, and returns an error if ctx ends first.
func (f *Fleet) Drain(ctx context.Context) error {
	for {
		var left atomic.Int64
		var wg sync.WaitGroup
		for _, v := range f.validators {
			wg.Go(func() {
				for v.Queued() > 0 {
					if _, err := v.Upload(ctx); err != nil {
						break
					}
				}
				left.Add(int64(v.Queued()))
			})
		}
		wg.Wait()
		if left.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: %d taps still queued: %w", left.Load(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Check reports any tap of any validator that was not answered exactly once.
func (f *Fleet) Check() error {
	var errs []error
	for _, v := range f.validators {
		if err := v.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	if n := f.counters.AnsweredTwice.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("%d taps answered twice", n))
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("… and %d more validators", len(errs)-5))
	}
	return errors.Join(errs...)
}

// TapID names one tap.
type TapID struct {
	Device string
	Seq    int64
}

// Taps returns every tap the fleet made, with its final status ("" if it
// has none).
func (f *Fleet) Taps() map[TapID]string {
	out := map[TapID]string{}
	for _, v := range f.validators {
		answers := v.Answers()
		for s := int64(1); s <= v.Seq(); s++ {
			out[TapID{v.dev.ID, s}] = answers[s]
		}
	}
	return out
}

// link is the validators' radio: an http.RoundTripper that fails at once
// while down.
type link struct {
	down atomic.Bool
	next http.RoundTripper
}

// ErrLinkDown is the error of a request made while the link is down.
var ErrLinkDown = errors.New("sim: the validator's link is down")

func (l *link) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.down.Load() {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, ErrLinkDown
	}
	return l.next.RoundTrip(r)
}
