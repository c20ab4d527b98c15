package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HIS is a hospital information system (or a pharmacy's till) as the
// medical plugin sees it: it posts bills and refunds to the plugin's HTTP
// API and asks for the insurer's day totals.
type HIS struct {
	base string
	http *http.Client
}

// NewHIS returns a HIS talking to the plugin's API at base, an address
// ("127.0.0.1:8580") or a URL ("http://127.0.0.1:8580").
func NewHIS(base string) *HIS {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &HIS{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Close releases the HIS's idle connections.
func (h *HIS) Close() { h.http.CloseIdleConnections() }

// Bill is a bill as the HIS posts it (POST /v1/bills). Money is in fen.
type Bill struct {
	BillID   string  `json:"bill_id"`
	Hospital string  `json:"hospital"`
	Terminal string  `json:"terminal,omitempty"`
	Kind     string  `json:"kind"` // outpatient, inpatient or pharmacy
	Card     string  `json:"card"`
	PIN      string  `json:"pin,omitempty"`
	Patient  Patient `json:"patient"`
	Lines    []Line  `json:"lines"`
	Total    int64   `json:"total"`
	Currency string  `json:"currency"`
}

// Patient is who the bill is for.
type Patient struct {
	IDNo string `json:"id_no"`
	Name string `json:"name"`
}

// Line is one item of a bill.
type Line struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	UnitPrice int64  `json:"unit_price"`
	Quantity  int64  `json:"quantity"`
	Amount    int64  `json:"amount"`
}

// NewLine is a line whose amount is price × quantity.
func NewLine(code, name string, unitPrice, quantity int64) Line {
	return Line{Code: code, Name: name, UnitPrice: unitPrice, Quantity: quantity, Amount: unitPrice * quantity}
}

// Totalled returns b with Total set to the sum of its lines.
func (b Bill) Totalled() Bill {
	b.Total = 0
	for _, l := range b.Lines {
		b.Total += l.Amount
	}
	return b
}

// Answer is the plugin's HTTP answer: its status and JSON body.
type Answer struct {
	Status int
	Body   json.RawMessage
}

// Decode decodes the body into v.
func (a Answer) Decode(v any) error { return json.Unmarshal(a.Body, v) }

// Problem is the plugin's error body.
type Problem struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Problem decodes the body as an error, or returns nil for a 2xx answer.
func (a Answer) Problem() *Problem {
	if a.Status >= 200 && a.Status < 300 {
		return nil
	}
	var p Problem
	_ = json.Unmarshal(a.Body, &p)
	return &p
}

// PostBill posts a bill; any HTTP answer is returned, errors are only
// transport failures.
func (h *HIS) PostBill(ctx context.Context, b Bill) (Answer, error) {
	return h.do(ctx, http.MethodPost, "/v1/bills", b)
}

// PostRaw posts any body to path, for tests of malformed requests.
func (h *HIS) PostRaw(ctx context.Context, path string, body []byte) (Answer, error) {
	return h.send(ctx, http.MethodPost, path, body)
}

// Refund asks for a bill to be refunded.
func (h *HIS) Refund(ctx context.Context, hospital, billID string) (Answer, error) {
	return h.do(ctx, http.MethodPost, "/v1/bills/"+url.PathEscape(billID)+"/refund", map[string]string{"hospital": hospital})
}

// Reconciliation asks for the insurer's totals of date (YYYY-MM-DD).
func (h *HIS) Reconciliation(ctx context.Context, date string) (Answer, error) {
	return h.do(ctx, http.MethodGet, "/v1/reconciliation?date="+url.QueryEscape(date), nil)
}

func (h *HIS) do(ctx context.Context, method, path string, in any) (Answer, error) {
	if in == nil {
		return h.send(ctx, method, path, nil)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return Answer{}, err
	}
	return h.send(ctx, method, path, raw)
}

func (h *HIS) send(ctx context.Context, method, path string, raw []byte) (Answer, error) {
	var body io.Reader
	if raw != nil {
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, body)
	if err != nil {
		return Answer{}, err
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("his: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("his: %s %s: %w", method, path, err)
	}
	return Answer{Status: resp.StatusCode, Body: out}, nil
}
