package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Client calls the hub's API as one operator.
type Client struct {
	URL, Token string
	HTTP       *http.Client
}

// NewClient is a client with a timeout short enough that a hung request
// becomes an unknown outcome to resolve rather than a stalled test.
func NewClient(url, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Client{URL: url, Token: token, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// Do sends a request (a write when body is not nil, with the given
// Idempotency-Key) and decodes a 2xx JSON answer into out. A transport
// error is returned as the error with status 0; any answer is not an
// error, and its body is returned for the caller to show.
func (c *Client) Do(ctx context.Context, method, path, key string, body, out any) (status int, hdr http.Header, text string, err error) {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return 0, nil, "", err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, resp.Header, "", err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, string(data), fmt.Errorf("decode %s %s answer %q: %w", method, path, data, err)
		}
	}
	return resp.StatusCode, resp.Header, string(data), nil
}

// retryable reports whether an answer leaves the outcome of a write open,
// so that it must be sent again with the same key: no answer at all, the
// hub's retryable 503, a gateway timeout, or 409 while the first try of
// the key is still in flight.
func retryable(status int, err error) bool {
	return err != nil || status == 0 || status == http.StatusServiceUnavailable ||
		status == http.StatusGatewayTimeout || status == http.StatusConflict || status == http.StatusBadGateway
}

// Write sends a write with key until it gets a definite answer (anything
// but a retryable one) or ctx ends, and returns that answer.
func (c *Client) Write(ctx context.Context, path, key string, body, out any) (int, http.Header, string, error) {
	backoff := 10 * time.Millisecond
	for {
		status, hdr, text, err := c.Do(ctx, "POST", path, key, body, out)
		if !retryable(status, err) {
			return status, hdr, text, nil
		}
		if ctx.Err() != nil {
			return status, hdr, text, fmt.Errorf("no definite answer to POST %s (key %s): last %d %s %v", path, key, status, text, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// Card is a card of the run and what it was topped up with.
type Card struct {
	Number string
	TopUp  int64
}

// Merchant is the merchant every payment of the suite goes to.
const Merchant = "M-FAULT"

// Setup registers the merchant and issues n cards topped up with topUp
// each, retrying through faults with the same keys. The top-ups are the
// first operations of the history.
func Setup(ctx context.Context, c *Client, h *History, n int, topUp int64) ([]Card, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	status, _, text, err := c.Write(ctx, "/v1/merchants", "fault-merchant", map[string]any{
		"id": Merchant, "name": "Fault suite shop", "mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222020000000001",
	}, nil)
	if err != nil || (status != 201 && status != 200) {
		return nil, fmt.Errorf("register merchant: %d %s %v", status, text, err)
	}
	cards := make([]Card, n)
	for i := range n {
		var card struct{ Number string }
		status, _, text, err := c.Write(ctx, "/v1/cards", fmt.Sprintf("fault-card-%d", i), map[string]any{
			"holder":  map[string]any{"name": fmt.Sprintf("Holder %d", i), "id_type": "passport", "id_number": fmt.Sprintf("FT%06d", i)},
			"product": "standard",
		}, &card)
		if err != nil || status != 201 {
			return nil, fmt.Errorf("issue card %d: %d %s %v", i, status, text, err)
		}
		status, _, text, err = c.Write(ctx, "/v1/cards/"+card.Number+"/topups", fmt.Sprintf("fault-topup-%d", i), map[string]any{
			"amount": topUp, "currency": "CNY", "purse": "cash", "method": "cash",
		}, nil)
		if err != nil || status != 201 {
			return nil, fmt.Errorf("top up card %s: %d %s %v", card.Number, status, text, err)
		}
		cards[i] = Card{Number: card.Number, TopUp: topUp}
		h.add(Op{Kind: TopUp, Card: card.Number, Amount: topUp, Outcome: Approved})
	}
	return cards, nil
}

// Load runs clients that pay random cards random small amounts, and read
// their balances, recording every operation in a History. A payment with
// no definite answer is sent again with the same key until it has one:
// the operation in the history spans from its first send to that answer.
type Load struct {
	Client  *Client
	Cards   []Card
	Clients int
	Seed    uint64
	History *History
	// ReadEvery makes one operation in ReadEvery a balance read (0: 5).
	ReadEvery int
	// Pace is the pause of each client between operations (0: none).
	Pace time.Duration
	// Resolve bounds how long a client keeps re-sending its last payment
	// once the load is stopped (0: 2 minutes).
	Resolve time.Duration

	cancel context.CancelFunc
	wg     sync.WaitGroup
	keys   atomic.Int64
	// Retries counts payments sent again with their key.
	Retries atomic.Int64
	// Unanswered counts tries that got no answer or a retryable one.
	Unanswered atomic.Int64
	// Errors holds definite answers that were neither approved nor
	// declined (a 4xx or 500): each is a test failure.
	errMu  sync.Mutex
	Errors []string
}

// Start starts the clients.
func (l *Load) Start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	if l.ReadEvery == 0 {
		l.ReadEvery = 5
	}
	if l.Resolve == 0 {
		l.Resolve = 2 * time.Minute
	}
	for i := range l.Clients {
		r := Rand(l.Seed + uint64(i)*7919)
		l.wg.Go(func() { l.run(ctx, i, r) })
	}
}

// Stop stops the clients once each has resolved its payment in flight.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *Load) run(ctx context.Context, client int, r *rand.Rand) {
	for ctx.Err() == nil {
		card := l.Cards[r.IntN(len(l.Cards))].Number
		if r.IntN(l.ReadEvery) == 0 {
			l.Read(ctx, client, card)
		} else {
			l.Pay(ctx, client, card, 1+r.Int64N(9))
		}
		if l.Pace > 0 {
			time.Sleep(l.Pace)
		}
	}
}

// payAnswer is the part of a payment's answer the suite reads.
type payAnswer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// Pay pays amount from card with a fresh key, re-sending until a definite
// answer; when ctx ends meanwhile it keeps re-sending for up to Resolve
// more. It returns the recorded operation.
func (l *Load) Pay(ctx context.Context, client int, card string, amount int64) Op {
	key := fmt.Sprintf("fault-%d-%d-%d", l.Seed, client, l.keys.Add(1))
	op := Op{Client: client, Kind: Pay, Card: card, Amount: amount, Key: key, Call: l.History.now()}
	body := payBody(card, amount)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(l.Resolve, cancel)
		context.AfterFunc(rctx, func() { t.Stop() })
	})
	defer stop()
	backoff := 10 * time.Millisecond
	for {
		op.Attempts++
		if op.Attempts > 1 {
			l.Retries.Add(1)
		}
		var ans payAnswer
		status, hdr, text, err := l.Client.Do(rctx, "POST", "/v1/payments", key, body, &ans)
		if !retryable(status, err) {
			op.Return = l.History.now()
			switch {
			case status == 201 && ans.Status == "approved":
				op.Outcome, op.ID = Approved, ans.ID
				op.Replayed = hdr.Get("Idempotent-Replayed") == "true"
			case status == 201 && ans.Status == "declined":
				op.Outcome, op.Reason = Declined, ans.Reason
			default:
				// Not an outcome of the payment: the op may still have
				// happened, so it stays open in the history.
				op.Outcome, op.Return = Unknown, math.MaxInt64
				l.errorf("payment %s: %d %s", key, status, text)
			}
			break
		}
		l.Unanswered.Add(1)
		if rctx.Err() != nil {
			// Never resolved: it may or may not have happened.
			op.Outcome, op.Return = Unknown, math.MaxInt64
			break
		}
		select {
		case <-rctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 400*time.Millisecond)
	}
	l.History.add(op)
	return op
}

func payBody(card string, amount int64) map[string]any {
	return map[string]any{"card": card, "channel": "retail", "merchant": Merchant, "amount": amount, "currency": "CNY"}
}

// Read reads card's cash balance once; a read that fails is not recorded
// (it changed nothing).
func (l *Load) Read(ctx context.Context, client int, card string) {
	call := l.History.now()
	bal, err := CashBalance(ctx, l.Client, card)
	if err != nil {
		return
	}
	l.History.add(Op{Client: client, Kind: Read, Card: card, Balance: bal, Call: call, Return: l.History.now(), Outcome: Approved})
}

func (l *Load) errorf(format string, args ...any) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if len(l.Errors) < 100 {
		l.Errors = append(l.Errors, fmt.Sprintf(format, args...))
	}
}

// CashBalance is the posted balance of a card's cash purse.
func CashBalance(ctx context.Context, c *Client, card string) (int64, error) {
	var v struct {
		Purses []struct {
			Purse  string `json:"purse"`
			Posted int64  `json:"posted"`
		} `json:"purses"`
	}
	status, _, text, err := c.Do(ctx, "GET", "/v1/cards/"+card, "", nil, &v)
	if err != nil || status != 200 {
		return 0, fmt.Errorf("GET card %s: %d %s %v", card, status, text, err)
	}
	for _, p := range v.Purses {
		if p.Purse == "cash" {
			return p.Posted, nil
		}
	}
	return 0, fmt.Errorf("card %s has no cash purse", card)
}

// WaitServing polls /readyz until it answers 200, then pays 1 fen from
// card until the payment is approved: the hub serves again. It fails
// after timeout.
func (l *Load) WaitServing(ctx context.Context, card string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", l.Client.URL+"/readyz", nil)
		resp, err := l.Client.HTTP.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(start), errors.New("/readyz did not answer 200 within " + timeout.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	op := l.Pay(ctx, -1, card, 1)
	if op.Outcome != Approved {
		return time.Since(start), fmt.Errorf("the probe payment after /readyz: %s (%s) within %v", op.Outcome, op.Reason, timeout)
	}
	return time.Since(start), nil
}
