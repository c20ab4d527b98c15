package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk/transit/tap"
)

// Client speaks the validator protocol (plugins/transit/PROTOCOL.md) to a
// transit plugin's front end, as validator firmware would. It is written
// from the protocol document, not from the plugin's code.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the front end at base ("http://host:port"),
// using hc (http.DefaultClient if nil).
func NewClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(base, "/"), http: hc}
}

// Result is the answer for one tap.
type Result struct {
	Device   string `json:"device"`
	Seq      int64  `json:"seq"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Field    string `json:"field,omitempty"`
	Fare     *int64 `json:"fare,omitempty"`
	Balance  *int64 `json:"balance,omitempty"`
	Transfer string `json:"transfer,omitempty"`
	Denied   bool   `json:"denied,omitempty"`
}

// Answer is the answer to an online tap.
type Answer struct {
	Result
	DenylistVersion int64 `json:"denylist_version"`
}

// Gap is a run of sequence numbers the hub has not seen from a device.
type Gap struct {
	Device string `json:"device"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
}

// UploadAnswer is the answer to an upload: a result per tap, in order.
type UploadAnswer struct {
	Results         []Result `json:"results"`
	Gaps            []Gap    `json:"gaps"`
	DenylistVersion int64    `json:"denylist_version"`
}

// Denylist is a deny list download: Full with Cards, or the change Since
// a version, with Add and Remove.
type Denylist struct {
	Version int64    `json:"version"`
	Full    bool     `json:"full"`
	Since   int64    `json:"since"`
	Cards   []string `json:"cards"`
	Add     []string `json:"add"`
	Remove  []string `json:"remove"`
}

// Health is the front end's health.
type Health struct {
	Status          string `json:"status"`
	Listen          string `json:"listen"`
	DenylistVersion int64  `json:"denylist_version"`
	DenylistSize    int    `json:"denylist_size"`
	Message         string `json:"message"`
}

// Error is an error answer of the front end.
type Error struct {
	HTTPStatus int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	Decision   string `json:"decision,omitempty"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.HTTPStatus, e.Code, e.Message)
	if e.Field != "" {
		s += " (at " + e.Field + ")"
	}
	return s
}

// Tap sends t online and waits at most deadline for the answer. Any error
// (an *Error answer, no answer in time, no connection) means: decide
// offline.
func (c *Client) Tap(ctx context.Context, t tap.Tap, deadline time.Duration) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var a Answer
	h := http.Header{"Citycard-Deadline-Ms": {strconv.FormatInt(deadline.Milliseconds(), 10)}}
	return a, c.do(ctx, http.MethodPost, "/v1/taps", h, t, &a)
}

// Upload uploads taps and returns a result per tap.
func (c *Client) Upload(ctx context.Context, taps []tap.Tap) (UploadAnswer, error) {
	var a UploadAnswer
	if err := c.do(ctx, http.MethodPost, "/v1/uploads", nil, map[string]any{"taps": taps}, &a); err != nil {
		return a, err
	}
	if len(a.Results) != len(taps) {
		return a, fmt.Errorf("sim: the upload of %d taps was answered with %d results", len(taps), len(a.Results))
	}
	return a, nil
}

// Denylist downloads the deny list: the change since version since (or the
// full list if since < 0 or the front end says so), waiting up to wait for
// a change when since is current.
func (c *Client) Denylist(ctx context.Context, since int64, wait time.Duration) (Denylist, error) {
	q := url.Values{}
	if since >= 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	if wait > 0 {
		q.Set("wait", strconv.FormatInt(int64(wait/time.Second), 10))
	}
	path := "/v1/denylist"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var d Denylist
	return d, c.do(ctx, http.MethodGet, path, nil, nil, &d)
}

// Health asks the front end whether it serves.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.do(ctx, http.MethodGet, "/v1/health", nil, nil, &h)
}

func (c *Client) do(ctx context.Context, method, path string, h http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{HTTPStatus: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Code == "" {
			e.Code, e.Message = "unknown", strings.TrimSpace(string(raw))
		}
		return e
	}
	return json.Unmarshal(raw, out)
}
