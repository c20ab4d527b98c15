package api

import (
	"context"
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
