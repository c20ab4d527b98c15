package medical

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
)

// insurerClient speaks the insurer's envelope: POST /api/{infno} with
// {infno, msgid, input}, answered {infcode, err_msg, output}. Package sim
// is a faithful copy of the insurer.
type insurerClient struct {
	base    string
	org     string
	timeout time.Duration
	http    *http.Client
}

func newInsurerClient(base, org string, timeout time.Duration) *insurerClient {
	// A transport of our own, so Stop can close its idle connections
	// without touching anyone else's.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &insurerClient{base: strings.TrimRight(base, "/"), org: org, timeout: timeout, http: &http.Client{Transport: tr}}
}

func (c *insurerClient) close() { c.http.CloseIdleConnections() }

// refused is a definitive answer of the insurer: infcode -1. It did
// nothing.
type refused struct {
	infno, msg string
}

func (e *refused) Error() string { return "the insurer refused " + e.infno + ": " + e.msg }

// errNoAnswer wraps every failure that is not a refusal: a timeout, a
// connection that failed, an answer that cannot be read. Whether the
// insurer acted is then unknown, and a settlement must be corrected.
var errNoAnswer = errors.New("the insurer did not answer")

// msgid makes a request's unique message id: the organisation's code,
// the time and 48 random bits, as the platform's are built from the
// sender's code, the time and a sequence number.
func (c *insurerClient) msgid() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return c.org + time.Now().In(sim.Zone).Format("20060102150405") + strings.ToUpper(hex.EncodeToString(b[:]))
}

// call sends one transaction under msgid and decodes its output into out.
// It gives up after the configured insurer timeout.
func (c *insurerClient) call(ctx context.Context, infno, msgid string, in, out any) error {
	input, err := json.Marshal(in)
	if err != nil {
		return err
	}
	body, err := json.Marshal(sim.Request{InfNo: infno, MsgID: msgid, Input: input})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/"+infno, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if id := sdk.CorrelationID(ctx); id != "" {
		req.Header.Set("X-Correlation-Id", id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s (msgid %s): %w", errNoAnswer, infno, msgid, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %s (msgid %s): reading the answer: %w", errNoAnswer, infno, msgid, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s (msgid %s): HTTP %d: %.200s", errNoAnswer, infno, msgid, resp.StatusCode, raw)
	}
	var r struct {
		InfCode *int            `json:"infcode"`
		ErrMsg  string          `json:"err_msg"`
		Output  json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.InfCode == nil {
		return fmt.Errorf("%w: %s (msgid %s): unreadable answer: %.200s", errNoAnswer, infno, msgid, raw)
	}
	if *r.InfCode != 0 {
		return &refused{infno: infno, msg: r.ErrMsg}
	}
	if out != nil {
		if err := json.Unmarshal(r.Output, out); err != nil {
			return fmt.Errorf("%w: %s (msgid %s): unreadable output: %w", errNoAnswer, infno, msgid, err)
		}
	}
	return nil
}

// correct asks the insurer to undo whatever the request omsgid did
// (2601). It tries twice; only an answer proves the insurer holds nothing
// of it.
func (c *insurerClient) correct(ctx context.Context, omsgid, oinfno string) (sim.CorrectOutput, error) {
	var out sim.CorrectOutput
	var err error
	for range 2 {
		if err = c.call(ctx, sim.InfCorrect, c.msgid(), sim.CorrectInput{OMsgID: omsgid, OInfNo: oinfno}, &out); err == nil {
			return out, nil
		}
		var r *refused
		if errors.As(err, &r) || ctx.Err() != nil {
			break
		}
	}
	return out, err
}

func (c *insurerClient) health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the insurer's health answers HTTP %d", resp.StatusCode)
	}
	return nil
}
