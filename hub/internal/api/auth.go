package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/store"
)

// tokenCache remembers authenticated operators for a few seconds: every
// request authenticates, and under load a store read per request would be
// the hot path. Only successes are cached, keyed by the token's hash.
type tokenCache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedOperator
}

type cachedOperator struct {
	op      store.Operator
	expires time.Time
}

// maxCachedTokens bounds the cache; past it the cache starts over.
const maxCachedTokens = 4096

func newTokenCache(ttl time.Duration, now func() time.Time) *tokenCache {
	return &tokenCache{ttl: ttl, now: now, m: map[string]cachedOperator{}}
}

func (c *tokenCache) authenticate(ctx context.Context, st store.Store, token string) (store.Operator, error) {
	key := operators.HashToken(token)
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.op, nil
	}
	op, err := operators.Authenticate(ctx, st, token)
	if err != nil {
		if fault.CodeOf(err) == fault.Unauthorized {
			return store.Operator{}, err
		}
		return store.Operator{}, fault.Wrap(fault.Unavailable, err)
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedTokens {
		c.m = map[string]cachedOperator{}
	}
	c.m[key] = cachedOperator{op: op, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return op, nil
}

// refusals counts refused requests in the audit log without letting a flood
// of them flood the log: per (operator, or remote address when the token is
// unknown; action; minute) they are counted in memory and written as one
// summary row once the minute has closed (seen by the next refusal or a
// timer) or at FlushAudit. A denial (401, 403) also writes its first row of
// the minute at once, as access refusals always have been; the other
// refusals wait for the summary. Rows are only ever appended.
type refusals struct {
	st  store.Store
	now func() time.Time
	log *slog.Logger

	mu     sync.Mutex
	open   map[refusalKey]*refusalTally
	timer  *time.Timer
	closed bool // FlushAudit ran: count nothing more in memory
}

type refusalKey struct {
	who    string // operator name, or "remote:" and the client's address
	action string
}

type refusalTally struct {
	minute   time.Time
	first    store.AuditEntry
	written  bool // the first refusal has its own row
	n        int64
	byStatus map[int]int64
}

func newRefusals(st store.Store, now func() time.Time, log *slog.Logger) *refusals {
	return &refusals{st: st, now: now, log: log, open: map[refusalKey]*refusalTally{}}
}

func denial(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// note counts refusal e, answered with status.
func (r *refusals) note(ctx context.Context, e store.AuditEntry, status int) {
	k := refusalKey{who: e.Operator, action: e.Action}
	if k.who == "" {
		k.who = "remote:" + e.Remote
	}
	minute := e.At.Truncate(time.Minute)
	if denial(status) {
		e.Outcome = "denied"
	}
	r.mu.Lock()
	due := r.takeClosed(minute)
	t := r.open[k]
	writeNow := r.closed // after FlushAudit each refusal is its own row
	if !writeNow {
		if t == nil {
			t = &refusalTally{minute: minute, first: e, byStatus: map[int]int64{}}
			r.open[k] = t
			if denial(status) {
				t.written, writeNow = true, true
			}
		}
		t.n++
		t.byStatus[status]++
		if r.timer == nil && (t.n > 1 || !t.written) {
			// The summary of a quiet minute is written when it closes.
			r.timer = time.AfterFunc(time.Until(minute.Add(time.Minute+time.Second)), r.tick)
		}
	}
	r.mu.Unlock()
	// The closed minutes' summaries go first, so the log stays in time order.
	ctx = context.WithoutCancel(ctx)
	r.write(ctx, due)
	if writeNow {
		r.append(ctx, e)
	}
}

// takeClosed removes and returns the tallies of minutes before now; the
// caller holds mu.
func (r *refusals) takeClosed(now time.Time) []*refusalTally {
	var out []*refusalTally
	for k, t := range r.open {
		if t.minute.Before(now) {
			out = append(out, t)
			delete(r.open, k)
		}
	}
	return out
}

// tick writes the summaries of the minutes that closed, and waits for the
// next minute while some are still open.
func (r *refusals) tick() {
	r.mu.Lock()
	r.timer = nil
	due := r.takeClosed(r.now().Truncate(time.Minute))
	if len(r.open) > 0 && !r.closed {
		r.timer = time.AfterFunc(time.Minute, r.tick)
	}
	r.mu.Unlock()
	r.write(context.Background(), due)
}

// flush writes every summary, the open minute's included, and counts
// nothing in memory afterwards: each later refusal writes its own row.
func (r *refusals) flush(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	var due []*refusalTally
	for k, t := range r.open {
		due = append(due, t)
		delete(r.open, k)
	}
	r.mu.Unlock()
	return r.write(ctx, due)
}

// write appends a summary row for each tally that counted more than its
// first row.
func (r *refusals) write(ctx context.Context, due []*refusalTally) error {
	var errs []error
	for _, t := range due {
		if t.written && t.n < 2 {
			continue
		}
		statuses := make([]string, 0, len(t.byStatus))
		for st, n := range t.byStatus {
			statuses = append(statuses, fmt.Sprintf("%d:%d", st, n))
		}
		slices.Sort(statuses)
		e := t.first
		e.At = r.now().UTC()
		e.Target = ""
		if e.Outcome != "denied" {
			e.Outcome = "refused"
		}
		// The first refusal's target and request id say where the rest came.
		e.Detail = fmt.Sprintf("count=%d minute=%s statuses=%s first_target=%s first: %s",
			t.n, t.minute.Format(time.RFC3339), strings.Join(statuses, ","), t.first.Target, t.first.Detail)
		if err := r.append(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *refusals) append(ctx context.Context, e store.AuditEntry) error {
	if err := r.st.AppendAudit(ctx, e); err != nil {
		r.log.Error("api: audit of refused requests failed", "action", e.Action, "operator", e.Operator,
			"remote", e.Remote, "err", err)
		return err
	}
	return nil
}

// FlushAudit writes the audit rows of the refusals still counted in memory.
// The hub calls it at shutdown, after the last request and before the store
// closes; refusals after it each write their own row.
func (s *server) FlushAudit(ctx context.Context) error {
	return s.refusals.flush(ctx)
}
