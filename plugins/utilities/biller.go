package utilities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk"
)

// billerClient speaks the billers' host's HTTP API (see package sim for a
// faithful copy of it).
type billerClient struct {
	base string
	http *http.Client
}

func newBillerClient(base string, timeout time.Duration) *billerClient {
	// A transport of our own, so Stop can close its idle connections
	// without touching anyone else's.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &billerClient{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: timeout}}
}

func (c *billerClient) close() { c.http.CloseIdleConnections() }

// bill is the billers' host's bill.
type bill struct {
	Biller      string `json:"biller"`
	Name        string `json:"name"`
	Account     string `json:"account"`
	ID          string `json:"bill_id"`
	Period      string `json:"period"`
	DueDate     string `json:"due_date"`
	Amount      int64  `json:"amount"`
	Outstanding int64  `json:"outstanding"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
	Partial     bool   `json:"partial_allowed"`
	Over        bool   `json:"overpayment_allowed"`
}

// billerPayRequest is POST /payments; Reference makes it idempotent.
type billerPayRequest struct {
	Biller    string `json:"biller"`
	Account   string `json:"account"`
	BillID    string `json:"bill_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// billerPayment is the billers' host's answer to a payment it applied.
type billerPayment struct {
	Receipt        string `json:"receipt"`
	Outstanding    int64  `json:"outstanding"`
	SettlementDate string `json:"settlement_date"`
}

// billerLookup is what the billers' host did with a reference.
type billerLookup struct {
	Status  string           `json:"status"` // applied or refused
	Request billerPayRequest `json:"request"`
	Payment *billerPayment   `json:"payment"`
	Error   *refusal         `json:"error"`
}

// refusal is a definitive answer of the billers' host: it understood the
// request and said no. Anything else (no answer, a 5xx, a body we cannot
// read) leaves open whether it acted, and is an errUnreachable.
type refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (r *refusal) Error() string { return "biller refused: " + r.Code + ": " + r.Message }

// errUnreachable wraps every failure that is not a refusal.
var errUnreachable = errors.New("the billers' host did not answer")

func (c *billerClient) bill(ctx context.Context, biller, account string) (bill, error) {
	var b bill
	err := c.do(ctx, http.MethodGet, "/billers/"+url.PathEscape(biller)+"/accounts/"+url.PathEscape(account)+"/bill", nil, &b)
	return b, err
}

func (c *billerClient) pay(ctx context.Context, req billerPayRequest) (billerPayment, error) {
	var p billerPayment
	err := c.do(ctx, http.MethodPost, "/payments", req, &p)
	return p, err
}

// lookup returns what became of a reference; found is false when the
// billers' host never saw it.
func (c *billerClient) lookup(ctx context.Context, reference string) (l billerLookup, found bool, err error) {
	err = c.do(ctx, http.MethodGet, "/payments/"+url.PathEscape(reference), nil, &l)
	var r *refusal
	if errors.As(err, &r) && r.Code == "payment_not_found" {
		return l, false, nil
	}
	return l, err == nil, err
}

func (c *billerClient) health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/health", nil, nil)
}

// do calls the billers' host. A 2xx answer is decoded into out; a 4xx with
// an error body is a *refusal; everything else wraps errUnreachable.
func (c *billerClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if id := sdk.CorrelationID(ctx); id != "" {
		req.Header.Set("X-Correlation-Id", id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", errUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading the answer: %w", errUnreachable, method, path, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: %s %s: unreadable answer: %w", errUnreachable, method, path, err)
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		var r refusal
		if json.Unmarshal(raw, &r) == nil && r.Code != "" {
			return &r
		}
	}
	return fmt.Errorf("%w: %s %s: HTTP %d: %.200s", errUnreachable, method, path, resp.StatusCode, raw)
}

// billerFields maps the billers' host's field names to the pay message's.
var billerFields = map[string]string{
	"biller": "/payload/biller", "account": "/payload/account", "bill_id": "/payload/bill_id",
	"amount": "/payload/amount", "currency": "/payload/currency", "reference": "/idempotency_key",
}

// hubError turns a refusal into the hub's error code for it, pointing at
// the field of the message at fault. The biller's own code stays in the
// message, for the operator.
func (r *refusal) hubError() *sdk.Error {
	code := sdk.CodeInternal
	switch r.Code {
	case "biller_not_found", "account_not_found":
		code = sdk.CodeNotFound
	case "bill_mismatch":
		code = sdk.CodeConflict
	case "currency_mismatch":
		code = sdk.CodeCurrencyMismatch
	case "invalid_amount", "partial_payment_not_allowed", "overpayment_not_allowed":
		code = sdk.CodeInvalidAmount
	case "reference_conflict":
		code = sdk.CodeIdempotencyConflict
	}
	return &sdk.Error{Code: code, Field: billerFields[r.Field], Message: fmt.Sprintf("the biller refused (%s): %s", r.Code, r.Message)}
}

// unavailable is the retryable answer when the billers' host cannot be
// reached: the hub redelivers the same message later.
func unavailable(what string, err error) *sdk.Error {
	return &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: what + ": " + err.Error()}
}
