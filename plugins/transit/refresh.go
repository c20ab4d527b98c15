package transit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/sdk"
)

// refresher keeps the deny list current: every refresh interval, at once
// when kicked (a tap result showed a newer version), and, until the first
// list arrives, every second or two.
func (st *state) refresher() {
	wait := time.Second
	timer := time.NewTimer(st.set.refresh)
	defer timer.Stop()
	for {
		if _, _, loaded := st.deny.state(); !loaded {
			timer.Reset(min(wait, st.set.refresh))
			wait = min(2*wait, st.set.refresh)
		} else {
			timer.Reset(st.set.refresh)
		}
		select {
		case <-st.ctx.Done():
			return
		case <-st.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		ctx, cancel := context.WithTimeout(st.ctx, min(st.set.refresh, 5*time.Second))
		if err := st.refreshDenylist(ctx, -1); err != nil && st.ctx.Err() == nil {
			st.log.Warn("deny list refresh failed", "err", err)
		}
		cancel()
	}
}

// noticeVersion kicks the refresher when the hub has a newer list than the
// plugin serves.
func (st *state) noticeVersion(v int64) {
	if cur, _, loaded := st.deny.state(); loaded && v > cur {
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
}

// refreshDenylist brings the deny list up to the hub's: the full list the
// first time, afterwards the change since the version held. With target
// above the version held it asks for the change straight away; otherwise
// it asks the version first, which is all a quiet interval costs.
func (st *state) refreshDenylist(ctx context.Context, target int64) error {
	select {
	case st.refresh <- struct{}{}:
		defer func() { <-st.refresh }()
	case <-ctx.Done():
		return sdk.AsError(ctx.Err())
	}
	cur, _, loaded := st.deny.state()
	if !loaded {
		return st.fetchFull(ctx)
	}
	if target <= cur {
		raw, err := st.hub.Query(ctx, sdk.QueryDenylistVersion, "")
		if err != nil {
			return err
		}
		var v hubDenylistVersion
		if err := json.Unmarshal(raw, &v); err != nil {
			return sdk.Errorf(sdk.CodeInternal, "the hub's deny list version is not understood: %v", err)
		}
		switch {
		case v.Version == cur:
			return nil
		case v.Version < cur:
			st.log.Warn("the hub's deny list is at an earlier version than the plugin's: reloading it", "hub", v.Version, "held", cur)
			return st.fetchFull(ctx)
		}
	}
	raw, err := st.hub.Query(ctx, queryDenylist, sincePrefix+strconv.FormatInt(cur, 10))
	if err != nil {
		return err
	}
	var d hubDenylist
	if err := json.Unmarshal(raw, &d); err != nil {
		return sdk.Errorf(sdk.CodeInternal, "the hub's deny list change is not understood: %v", err)
	}
	switch {
	case d.Version < cur:
		return st.fetchFull(ctx)
	case d.Full || d.Since == nil:
		if st.deny.replace(d.Version, d.Cards) {
			st.log.Info("deny list replaced", "version", d.Version, "size", len(d.Cards), "from", cur)
		}
		return nil
	case st.deny.apply(*d.Since, d.Version, d.Add, d.Remove):
		if d.Version > cur {
			_, n, _ := st.deny.state()
			st.log.Info("deny list updated", "version", d.Version, "from", cur, "add", len(d.Add), "remove", len(d.Remove), "size", n)
		}
		return nil
	}
	// A change from another version than the one held: start again.
	st.log.Warn("the hub's deny list change does not follow the version held", "since", *d.Since, "held", cur, "version", d.Version)
	return st.fetchFull(ctx)
}

func (st *state) fetchFull(ctx context.Context) error {
	raw, err := st.hub.Query(ctx, queryDenylist, "")
	if err != nil {
		return err
	}
	var d hubDenylist
	if err := json.Unmarshal(raw, &d); err != nil {
		return sdk.Errorf(sdk.CodeInternal, "the hub's deny list is not understood: %v", err)
	}
	if d.Since != nil && !d.Full {
		return fmt.Errorf("transit: the hub answered the full deny list with a change since %d", *d.Since)
	}
	if st.deny.replace(d.Version, d.Cards) {
		st.log.Info("deny list loaded", "version", d.Version, "size", len(d.Cards))
	}
	return nil
}
