package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PluginSpec is one plugin of a hub's --plugins file: a bundled reference
// plugin and its configuration.
type PluginSpec struct {
	Name    string
	Channel string
	Config  map[string]any
}

// WritePlugins writes the hub's --plugins file for the bundled plugins
// specs into dir and returns its path.
func WritePlugins(dir string, specs ...PluginSpec) (string, error) {
	var list []map[string]any
	for _, s := range specs {
		p := map[string]any{"name": s.Name, "bundled": true, "config": s.Config}
		if s.Channel != "" {
			p["channel"] = s.Channel
		}
		list = append(list, p)
	}
	data, err := json.Marshal(map[string]any{"plugins": list})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "plugins.json")
	return path, os.WriteFile(path, data, 0o644)
}

// PluginState is a plugin as GET /v1/plugins lists it.
type PluginState struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
}

// Plugin reads one plugin's state from the hub.
func Plugin(ctx context.Context, c *Client, name string) (PluginState, error) {
	var v struct {
		Plugins []PluginState `json:"plugins"`
	}
	status, _, text, err := c.Do(ctx, "GET", "/v1/plugins", "", nil, &v)
	if err != nil || status != 200 {
		return PluginState{}, fmt.Errorf("GET /v1/plugins: %d %s %v", status, text, err)
	}
	for _, p := range v.Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return PluginState{}, fmt.Errorf("the hub runs no plugin %q", name)
}

// WaitPlugin waits until the hub lists plugin name running with a process
// other than notPID (0: any), and returns its state.
func WaitPlugin(ctx context.Context, c *Client, name string, notPID int, timeout time.Duration) (PluginState, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := Plugin(ctx, c, name)
		if err == nil && p.State == "running" && p.PID != 0 && p.PID != notPID {
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("plugin %s not running again within %v (last: %+v, %v)", name, timeout, p, err)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// KillPlugin sends SIGKILL to the running process of plugin name, waits
// until the hub runs it again in a new process, and returns how long that
// took.
func KillPlugin(ctx context.Context, c *Client, name string) (time.Duration, error) {
	p, err := WaitPlugin(ctx, c, name, 0, 30*time.Second)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill -9 plugin %s (pid %d): %w", name, p.PID, err)
	}
	if _, err := WaitPlugin(ctx, c, name, p.PID, 60*time.Second); err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

// Transfer is a ledger transfer as GET /v1/transfers/{id} shows it.
type Transfer struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Card       string `json:"card"`
	Amount     int64  `json:"amount"`
	Merchant   string `json:"merchant"`
	Terminal   string `json:"terminal"`
	Operator   string `json:"operator"`
	ReversedBy string `json:"reversed_by"`
}

// GetTransfer reads transfer id; found is false when the ledger has none.
func GetTransfer(ctx context.Context, c *Client, id string) (tr Transfer, found bool, err error) {
	id = strings.TrimLeft(id, "0")
	if _, perr := strconv.ParseInt(id, 10, 64); perr != nil {
		return tr, false, fmt.Errorf("transfer id %q: %v", id, perr)
	}
	status, _, text, err := c.Do(ctx, "GET", "/v1/transfers/"+id, "", nil, &tr)
	switch {
	case err != nil:
		return tr, false, err
	case status == 404:
		return tr, false, nil
	case status != 200:
		return tr, false, fmt.Errorf("GET transfer %s: %d %s", id, status, text)
	}
	return tr, true, nil
}

// Balances reads a card's posted balance by purse.
func Balances(ctx context.Context, c *Client, card string) (map[string]int64, error) {
	var v struct {
		Purses []struct {
			Purse  string `json:"purse"`
			Posted int64  `json:"posted"`
		} `json:"purses"`
	}
	status, _, text, err := c.Do(ctx, "GET", "/v1/cards/"+card, "", nil, &v)
	if err != nil || status != 200 {
		return nil, fmt.Errorf("GET card %s: %d %s %v", card, status, text, err)
	}
	out := map[string]int64{}
	for _, p := range v.Purses {
		out[p.Purse] = p.Posted
	}
	return out, nil
}

// IssueCards registers nothing but cards: n cards, each topped up with
// topUp in every purse of purses, retrying through faults with the same
// keys. prefix makes the keys unique to the caller.
func IssueCards(ctx context.Context, c *Client, prefix string, n int, topUp int64, purses ...string) ([]string, error) {
	if len(purses) == 0 {
		purses = []string{"cash"}
	}
	var out []string
	for i := range n {
		var card struct{ Number string }
		status, _, text, err := c.Write(ctx, "/v1/cards", fmt.Sprintf("%s-card-%d", prefix, i), map[string]any{
			"holder":  map[string]any{"name": fmt.Sprintf("Holder %d", i), "id_type": "passport", "id_number": fmt.Sprintf("%s%05d", strings.ToUpper(prefix[:min(2, len(prefix))]), i)},
			"product": "standard",
		}, &card)
		if err != nil || status != 201 {
			return nil, fmt.Errorf("issue card %d: %d %s %v", i, status, text, err)
		}
		for _, purse := range purses {
			status, _, text, err = c.Write(ctx, "/v1/cards/"+card.Number+"/topups", fmt.Sprintf("%s-topup-%d-%s", prefix, i, purse), map[string]any{
				"amount": topUp, "currency": "CNY", "purse": purse, "method": "cash",
			}, nil)
			if err != nil || status != 201 {
				return nil, fmt.Errorf("top up card %s (%s): %d %s %v", card.Number, purse, status, text, err)
			}
		}
		out = append(out, card.Number)
	}
	return out, nil
}

// Register posts a setup write (a merchant, a terminal) with key and
// accepts 200 or 201.
func Register(ctx context.Context, c *Client, path, key string, body any) error {
	status, _, text, err := c.Write(ctx, path, key, body, nil)
	if err != nil || (status != 200 && status != 201) {
		return fmt.Errorf("POST %s: %d %s %v", path, status, text, err)
	}
	return nil
}
