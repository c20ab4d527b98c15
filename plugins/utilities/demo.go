package utilities

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/utilities/sim"
	"github.com/citycard/citycard/sdk"
)

// demoBillers are the city's billers in the demo: the simulator's code,
// the hub merchant paid on each one's behalf, its merchant category and
// its fee.
var demoBillers = []struct {
	code, merchant, mcc string
	feeBps              int64
}{
	{"water", "M-WATER", "4900", 20},
	{"power", "M-POWER", "4900", 20},
	{"telecom", "M-TELECOM", "4814", 60},
	{"internet", "M-INTERNET", "4816", 60},
	{"cable-tv", "M-CABLETV", "4899", 60},
}

// Bundle is the utilities plugin as the citycard binary ships it: the
// plugin, the billers' simulator it talks to in the demo, the billers'
// merchants, and the demo flows.
func Bundle() demo.Bundle {
	d := &demoRun{}
	names := map[string]string{}
	for _, s := range sim.DefaultBillers() {
		names[s.Code] = s.Name
	}
	merchants := make([]demo.Merchant, len(demoBillers))
	for i, b := range demoBillers {
		merchants[i] = demo.Merchant{ID: b.merchant, Name: names[b.code], MCC: b.mcc, FeeRateBps: b.feeBps}
	}
	return demo.Bundle{
		Name:      Name,
		Channel:   "utilities",
		New:       func() sdk.Plugin { return New() },
		Merchants: merchants,
		Start:     d.start,
		Flows: []demo.Flow{
			{Name: "utilities: pay a water bill", Run: d.payWaterBill},
			{Name: "utilities: partial payment refused where the biller forbids it", Run: d.partialPayment},
			{Name: "utilities: declined for insufficient funds", Run: d.insufficientFunds},
			{Name: "utilities: reconciliation with the biller's day file", Run: d.reconcile},
		},
	}
}

// demoRun is one demo's simulator and the receipts its flows collected,
// for the reconciliation flow to check the biller's day file against.
type demoRun struct {
	mu       sync.Mutex
	url      string
	run      string // makes this run's idempotency keys its own
	receipts []Receipt
}

func (d *demoRun) start(ctx context.Context) (json.RawMessage, func(), error) {
	url, stop, err := sim.New(sim.Options{}).Start("127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("utilities: starting the billers' simulator: %w", err)
	}
	billers := map[string]any{}
	for _, b := range demoBillers {
		billers[b.code] = map[string]string{"merchant": b.merchant}
	}
	cfg, err := json.Marshal(map[string]any{"biller_url": url, "billers": billers, "request_timeout_ms": 5000})
	if err != nil {
		stop()
		return nil, nil, err
	}
	d.mu.Lock()
	d.url, d.run = url, sdk.NewID()
	d.mu.Unlock()
	return cfg, stop, nil
}

func (d *demoRun) started() (url, run string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.url == "" {
		return "", "", errors.New("utilities: the billers' simulator was not started")
	}
	return d.url, d.run, nil
}

// key is a demo payment's idempotency key: stable within a run, so
// sending a message twice shows one payment, and new in each run.
func (d *demoRun) key(name string) string {
	_, run, _ := d.started()
	return "demo-" + name + "-" + run
}

func (d *demoRun) keep(r Receipt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.receipts = append(d.receipts, r)
}

func (d *demoRun) payWaterBill(ctx context.Context, env demo.Env) error {
	card := env.Card("alice")
	b, err := queryBill(ctx, env, "water", "10020031")
	if err != nil {
		return err
	}
	env.Logf("City Water bill %s for account %s: %s outstanding, due %s", b.ID, b.Account, demo.Yuan(b.Outstanding), b.DueDate)
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	m := payMessage(d.key("water"), "water", b, card, b.Outstanding)
	r, err := payBill(ctx, env, m)
	if err != nil {
		return err
	}
	if r.Status != Approved || r.Amount != b.Outstanding || r.Payment == "" || r.BillerReceipt == "" {
		return fmt.Errorf("the water bill was not paid: %+v", r)
	}
	env.Logf("paid %s with alice's card: hub payment %s, City Water receipt %s", demo.Yuan(r.Amount), r.Payment, r.BillerReceipt)
	if err := wantBalance(ctx, env, card, before-r.Amount); err != nil {
		return err
	}
	replies, err := env.Send(ctx, Name, m)
	if err != nil {
		return err
	}
	if len(replies) == 0 {
		// The router's deduplication may keep a repeat from the plugin.
		env.Logf("the same message sent again was recognised by the hub as a repeat")
	} else {
		var again Receipt
		if err := onlyReply(replies, TypeReceipt, &again); err != nil {
			return err
		}
		if again.Payment != r.Payment || again.BillerReceipt != r.BillerReceipt {
			return fmt.Errorf("the same message sent again paid again: %+v, first %+v", again, r)
		}
		env.Logf("the same message delivered again answers the same receipt")
	}
	if err := wantBalance(ctx, env, card, before-r.Amount); err != nil {
		return err
	}
	env.Logf("the card was charged once")
	after, err := queryBill(ctx, env, "water", "10020031")
	if err != nil {
		return err
	}
	if after.Outstanding != 0 || after.Status != "paid" {
		return fmt.Errorf("City Water shows bill %s %s with %s outstanding, want paid", after.ID, after.Status, demo.Yuan(after.Outstanding))
	}
	env.Logf("City Water shows bill %s paid", after.ID)
	d.keep(r)
	return nil
}

func (d *demoRun) partialPayment(ctx context.Context, env demo.Env) error {
	card := env.Card("alice")
	b, err := queryBill(ctx, env, "water", "10020032")
	if err != nil {
		return err
	}
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	half := b.Outstanding / 2
	_, err = payBill(ctx, env, payMessage(d.key("water-half"), "water", b, card, half))
	if !hasCode(err, sdk.CodeInvalidAmount) {
		return fmt.Errorf("half of a City Water bill: got %v, want the error invalid_amount", err)
	}
	env.Logf("half of water bill %s (%s of %s) refused: %v", b.ID, demo.Yuan(half), demo.Yuan(b.Outstanding), err)
	if err := wantBalance(ctx, env, card, before); err != nil {
		return err
	}
	if after, err := queryBill(ctx, env, "water", "10020032"); err != nil {
		return err
	} else if after.Outstanding != b.Outstanding {
		return fmt.Errorf("City Water shows %s outstanding after a refused payment, want %s", demo.Yuan(after.Outstanding), demo.Yuan(b.Outstanding))
	}
	env.Logf("the card was not charged and the bill is untouched")

	t, err := queryBill(ctx, env, "telecom", "10020033")
	if err != nil {
		return err
	}
	const part = 2000
	r, err := payBill(ctx, env, payMessage(d.key("telecom-part"), "telecom", t, card, part))
	if err != nil {
		return err
	}
	if r.Status != Approved || r.Outstanding == nil || *r.Outstanding != t.Outstanding-part {
		return fmt.Errorf("part of a City Telecom bill: %+v", r)
	}
	env.Logf("City Telecom takes instalments: paid %s of %s, %s still owed", demo.Yuan(part), demo.Yuan(t.Outstanding), demo.Yuan(*r.Outstanding))
	d.keep(r)
	return nil
}

func (d *demoRun) insufficientFunds(ctx context.Context, env demo.Env) error {
	card := env.Card("bob")
	b, err := queryBill(ctx, env, "telecom", "10020034")
	if err != nil {
		return err
	}
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	r, err := payBill(ctx, env, payMessage(d.key("bob-telecom"), "telecom", b, card, b.Outstanding))
	if err != nil {
		return err
	}
	if r.Status != Declined || r.Reason != sdk.CodeInsufficientFunds {
		return fmt.Errorf("bob's card paid a %s bill: %+v", demo.Yuan(b.Outstanding), r)
	}
	env.Logf("bob's card (%s) declined for a %s bill: %s", demo.Yuan(before), demo.Yuan(b.Outstanding), r.Reason)
	if err := wantBalance(ctx, env, card, before); err != nil {
		return err
	}
	if after, err := queryBill(ctx, env, "telecom", "10020034"); err != nil {
		return err
	} else if after.Outstanding != b.Outstanding {
		return fmt.Errorf("City Telecom shows %s outstanding after a decline, want %s", demo.Yuan(after.Outstanding), demo.Yuan(b.Outstanding))
	}
	env.Logf("City Telecom was never asked: the bill still shows %s outstanding", demo.Yuan(b.Outstanding))
	return nil
}

func (d *demoRun) reconcile(ctx context.Context, env demo.Env) error {
	card := env.Card("alice")
	for _, p := range []struct {
		biller, account string
		amount          int64 // 0: the whole bill
	}{{"internet", "10020035", 0}, {"power", "10020036", 3000}} {
		b, err := queryBill(ctx, env, p.biller, p.account)
		if err != nil {
			return err
		}
		amount := p.amount
		if amount == 0 {
			amount = b.Outstanding
		}
		r, err := payBill(ctx, env, payMessage(d.key("recon-"+p.biller), p.biller, b, card, amount))
		if err != nil {
			return err
		}
		if r.Status != Approved {
			return fmt.Errorf("%s bill %s: %+v", p.biller, b.ID, r)
		}
		d.keep(r)
	}
	url, _, err := d.started()
	if err != nil {
		return err
	}
	d.mu.Lock()
	receipts := slices.Clone(d.receipts)
	d.mu.Unlock()

	// Each receipt by the biller's id; each day file the receipts name.
	want := map[string]Receipt{}
	var days []string
	for _, r := range receipts {
		want[r.BillerReceipt] = r
		if !slices.Contains(days, r.SettlementDate) {
			days = append(days, r.SettlementDate)
		}
	}
	var lines int
	var total int64
	for _, day := range days {
		rows, err := dayFile(ctx, url, day)
		if err != nil {
			return err
		}
		for _, row := range rows {
			amount, err := strconv.ParseInt(row["amount"], 10, 64)
			if err != nil {
				return fmt.Errorf("day file %s: amount %q: %w", day, row["amount"], err)
			}
			r, ok := want[row["receipt"]]
			if !ok {
				return fmt.Errorf("day file %s lists %s receipt %s (%s), which no card payment of ours matches", day, row["biller"], row["receipt"], demo.Yuan(amount))
			}
			if r.Amount != amount || r.Biller != row["biller"] || r.Account != row["account"] || r.BillID != row["bill_id"] || r.Currency != row["currency"] {
				return fmt.Errorf("day file %s: receipt %s says %s %s %s %s; ours says %s %s %s %s", day, row["receipt"],
					row["biller"], row["account"], row["bill_id"], demo.Yuan(amount), r.Biller, r.Account, r.BillID, demo.Yuan(r.Amount))
			}
			var t struct {
				Amount   int64  `json:"amount"`
				Merchant string `json:"merchant"`
			}
			if err := env.API(ctx, http.MethodGet, "/v1/transfers/"+r.Payment, nil, &t); err != nil {
				return fmt.Errorf("hub payment %s of biller receipt %s: %w", r.Payment, r.BillerReceipt, err)
			}
			if abs(t.Amount) != amount || t.Merchant != merchantOf(r.Biller) {
				return fmt.Errorf("hub payment %s is %s to %s; the biller booked %s to %s", r.Payment, demo.Yuan(abs(t.Amount)), t.Merchant, demo.Yuan(amount), merchantOf(r.Biller))
			}
			delete(want, row["receipt"])
			lines++
			total += amount
		}
		env.Logf("day file %s from the billers: %d payments", day, len(rows))
	}
	if len(want) > 0 {
		missing := slices.Sorted(maps.Keys(want))
		r := want[missing[0]]
		return fmt.Errorf("%d receipts are missing from the billers' day files, among them %s (%s %s, hub payment %s, due in the file of %s)",
			len(missing), r.BillerReceipt, r.Biller, demo.Yuan(r.Amount), r.Payment, r.SettlementDate)
	}
	env.Logf("reconciled: %d biller payments, %s, each matched to its hub payment", lines, demo.Yuan(total))
	return nil
}

func merchantOf(biller string) string {
	for _, b := range demoBillers {
		if b.code == biller {
			return b.merchant
		}
	}
	return ""
}

// dayFile downloads the billers' reconciliation file of day, one map per
// payment keyed by the file's header.
func dayFile(ctx context.Context, base, day string) ([]map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/reconciliation?date="+day, nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("day file %s: %w", day, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("day file %s: %s", day, resp.Status)
	}
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("day file %s: %w", day, err)
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("day file %s has no header", day)
	}
	out := make([]map[string]string, 0, len(records)-1)
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, name := range records[0] {
			row[name] = rec[i]
		}
		out = append(out, row)
	}
	return out, nil
}

func queryBill(ctx context.Context, env demo.Env, biller, account string) (bill, error) {
	body, err := json.Marshal(billQuery{Biller: biller, Account: account})
	if err != nil {
		return bill{}, err
	}
	replies, err := env.Send(ctx, Name, sdk.Message{Type: TypeBillQuery, Payload: body})
	if err != nil {
		return bill{}, fmt.Errorf("reading %s bill of %s: %w", biller, account, err)
	}
	var b bill
	if err := onlyReply(replies, TypeBill, &b); err != nil {
		return bill{}, err
	}
	return b, nil
}

func payMessage(key, biller string, b bill, card string, amount int64) sdk.Message {
	body, _ := json.Marshal(billPay{Biller: biller, Account: b.Account, BillID: b.ID, Card: card, Amount: amount, Currency: b.Currency})
	return sdk.Message{Type: TypeBillPay, IdempotencyKey: key, Payload: body}
}

func payBill(ctx context.Context, env demo.Env, m sdk.Message) (Receipt, error) {
	replies, err := env.Send(ctx, Name, m)
	if err != nil {
		return Receipt{}, err
	}
	var r Receipt
	return r, onlyReply(replies, TypeReceipt, &r)
}

func onlyReply(replies []sdk.Message, typ string, out any) error {
	if len(replies) != 1 || replies[0].Type != typ {
		return fmt.Errorf("the plugin answered %d messages, want one %s", len(replies), typ)
	}
	return json.Unmarshal(replies[0].Payload, out)
}

func cardBalance(ctx context.Context, env demo.Env, card string) (int64, error) {
	var c struct {
		Balance int64 `json:"balance"`
	}
	if err := env.API(ctx, http.MethodGet, "/v1/cards/"+card, nil, &c); err != nil {
		return 0, fmt.Errorf("reading card %s: %w", card, err)
	}
	return c.Balance, nil
}

func wantBalance(ctx context.Context, env demo.Env, card string, want int64) error {
	got, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("card %s holds %s, want %s", card, demo.Yuan(got), demo.Yuan(want))
	}
	return nil
}

// hasCode reports whether err carries the error code, as an *sdk.Error or,
// from a router that wraps errors in its own, in its text.
func hasCode(err error, code string) bool {
	var e *sdk.Error
	if errors.As(err, &e) {
		return e.Code == code
	}
	return err != nil && strings.Contains(err.Error(), code)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
