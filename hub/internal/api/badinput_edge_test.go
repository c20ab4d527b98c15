package api_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// edgeHub is a hub with a merchant and one card holding 10,000 fen in cash,
// of which 100 were spent at SHOP.
func edgeHub(t *testing.T, st store.Store) (*harness, string) {
	t.Helper()
	h := newHarness(t, st)
	h.post(finance, "/v1/merchants", map[string]any{"id": "SHOP", "name": "Corner shop", "mcc": "5411",
		"fee_rate_bps": 60, "settlement_account": "6222000011112222"}).want(201)
	card := h.post(teller, "/v1/cards", map[string]any{
		"holder": map[string]any{"name": "Li Lei", "id_type": "passport", "id_number": "E12345678"}, "pin": "123456",
	}).want(201).str("number")
	h.post(teller, "/v1/cards/"+card+"/topups", map[string]any{"amount": 10100, "currency": "CNY"}).want(201)
	if p := h.post(teller, "/v1/payments", map[string]any{"card": card, "channel": "retail", "merchant": "SHOP",
		"amount": 100, "currency": "CNY"}).want(201); p.str("status") != "approved" {
		t.Fatalf("setup payment %s", p.json())
	}
	return h, card
}

func cashOf(h *harness, card string) int64 {
	h.t.Helper()
	return h.get(teller, "/v1/cards/"+card).want(200).purse("cash").int("posted")
}

// TestBadInputAtTheEdge sends, on each driver, the requests issue 11 found
// guessed at (a duplicated key, an empty body, a body that is not JSON, a
// NUL in a name, an amount that overflows) and checks each is refused with
// its status, code and field, alike on SQLite and PostgreSQL, and leaves
// every table's row count and the trial balance as they were.
func TestBadInputAtTheEdge(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h, card := edgeHub(t, st)
		topups := "/v1/cards/" + card + "/topups"
		holder := func(name string) map[string]any {
			return map[string]any{"holder": map[string]any{"name": name, "id_type": "passport", "id_number": "E1"}}
		}
		merchant := func(id, name, account string) map[string]any {
			return map[string]any{"id": id, "name": name, "mcc": "5411", "fee_rate_bps": 60, "settlement_account": account}
		}
		send := func(role, path string, body any, hdr map[string]string) func() *reply {
			return func() *reply {
				all := map[string]string{"Idempotency-Key": h.newKey()}
				for k, v := range hdr {
					all[k] = v
				}
				return h.req("POST", path, h.tokens[role], body, all)
			}
		}
		form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		cases := []struct {
			name   string
			send   func() *reply
			status int
			code   string
			field  string
			detail string // part of the problem's detail
			grows  []string
		}{
			// 1. A key given twice is ambiguous, at any depth.
			{"duplicated amount", send(teller, topups, `{"amount":100,"amount":200,"currency":"CNY"}`, nil),
				400, "invalid_request", "amount", `"amount" appears more than once`, nil},
			{"duplicated amount in a payment", send(teller, "/v1/payments",
				`{"card":"`+card+`","channel":"retail","merchant":"SHOP","amount":1,"currency":"CNY","amount":9000}`, nil),
				400, "invalid_request", "amount", "", nil},
			{"duplicated holder name", send(teller, "/v1/cards",
				`{"holder":{"name":"A","id_type":"passport","id_number":"E1","name":"B"}}`, nil),
				400, "invalid_request", "holder.name", "in holder", nil},
			{"duplicated key spelt with an escape", send(teller, topups, `{"amount":100,"\u0061mount":200,"currency":"CNY"}`, nil),
				400, "invalid_request", "amount", "", nil},
			// 2. An empty body is not a request of zero values.
			{"empty top-up", send(teller, topups, "", nil), 400, "invalid_request", "", "the request body is empty", nil},
			{"empty payment", send(teller, "/v1/payments", "", nil), 400, "invalid_request", "", "the request body is empty", nil},
			{"blank issue", send(teller, "/v1/cards", " \r\n", nil), 400, "invalid_request", "", "the request body is empty", nil},
			{"empty merchant", send(finance, "/v1/merchants", "", nil), 400, "invalid_request", "", "the request body is empty", nil},
			// 3. A body declared as something else is not read as JSON.
			{"form body, as curl -d sends", send(teller, topups, `{"amount":100,"currency":"CNY"}`, form),
				415, "unsupported_media_type", "Content-Type", "application/x-www-form-urlencoded", nil},
			{"text/plain payment", send(teller, "/v1/payments", `{"card":"`+card+`"}`, map[string]string{"Content-Type": "text/plain"}),
				415, "unsupported_media_type", "Content-Type", "", nil},
			{"form on a bodiless write", send(risk, "/v1/cards/"+card+"/freeze", "", form),
				415, "unsupported_media_type", "Content-Type", "", nil},
			// 4. Text a store cannot hold alike, or no real value holds.
			{"NUL in a holder name", send(teller, "/v1/cards", holder("Li\x00Lei"), nil), 400, "invalid_request", "holder.name", "U+0000", nil},
			{"newline in a holder name", send(teller, "/v1/cards", holder("Li\nLei"), nil), 400, "invalid_request", "holder.name", "U+000A", nil},
			{"C1 control in an ID number", send(teller, "/v1/cards", map[string]any{"holder": map[string]any{
				"name": "Li", "id_type": "passport", "id_number": "E1\u0085"}}, nil), 400, "invalid_request", "holder.id_number", "U+0085", nil},
			{"tab in a phone", send(teller, "/v1/cards", map[string]any{"holder": map[string]any{
				"name": "Li", "id_type": "passport", "id_number": "E1", "phone": "138\t0000"}}, nil), 400, "invalid_request", "holder.phone", "", nil},
			{"invalid UTF-8 in a holder name", send(teller, "/v1/cards",
				"{\"holder\":{\"name\":\"Li \xc3\x28 Lei\",\"id_type\":\"passport\",\"id_number\":\"E1\"}}", nil),
				400, "invalid_request", "holder.name", "UTF-8", nil},
			{"holder name over 128 characters", send(teller, "/v1/cards", holder(strings.Repeat("李", 129)), nil),
				400, "invalid_request", "holder.name", "at most 128", nil},
			{"NUL in a merchant name", send(finance, "/v1/merchants", merchant("NEW", "Shop\x00", "1"), nil),
				400, "invalid_request", "name", "U+0000", nil},
			{"NUL in a merchant id", send(finance, "/v1/merchants", merchant("NEW\x00", "Shop", "1"), nil),
				400, "invalid_request", "id", "", nil},
			{"newline in a settlement account", send(finance, "/v1/merchants", merchant("NEW", "Shop", "62\n22"), nil),
				400, "invalid_request", "settlement_account", "", nil},
			{"merchant name over 128 characters", send(finance, "/v1/merchants", merchant("NEW", strings.Repeat("x", 129), "1"), nil),
				400, "invalid_request", "name", "", nil},
			{"NUL in a terminal's merchant", send(finance, "/v1/terminals", map[string]any{"id": "T-1", "merchant": "SHOP\x00"}, nil),
				400, "invalid_request", "merchant", "", nil},
			{"NUL in a payment's merchant", send(teller, "/v1/payments", map[string]any{"card": card, "channel": "retail",
				"merchant": "SHOP\x00", "amount": 1, "currency": "CNY"}, nil), 400, "invalid_request", "merchant", "", nil},
			{"NUL in a purse", send(teller, topups, map[string]any{"amount": 1, "currency": "CNY", "purse": "cash\x00"}, nil),
				400, "invalid_request", "purse", "", nil},
			// 5. An amount whose sum with a balance or total would overflow.
			{"top-up of the largest int64", send(teller, topups, map[string]any{"amount": int64(math.MaxInt64), "currency": "CNY"}, nil),
				400, "invalid_amount", "amount", "overflow", viaService},
			{"top-up that overflows the balance by one", send(teller, topups, map[string]any{"amount": int64(math.MaxInt64 - 9999), "currency": "CNY"}, nil),
				400, "invalid_amount", "amount", "overflow", viaService},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				before := h.snapshot()
				p := tc.send().problem(tc.status, tc.code, tc.field)
				if !strings.Contains(p.str("detail"), tc.detail) {
					t.Fatalf("detail %q lacks %q", p.str("detail"), tc.detail)
				}
				if d := before.diff(h.snapshot(), tc.grows...); d != "" {
					t.Fatalf("the refused request changed the store: %s", d)
				}
			})
		}
		h.t = t
		// A payment of the largest int64 passes no total of this card's
		// (the writer refuses those, see ledger.TestOverflowRefused): it
		// is an honest decline on the channel's limit, never an approval.
		big := h.post(teller, "/v1/payments", map[string]any{"card": card, "channel": "retail", "merchant": "SHOP",
			"amount": int64(math.MaxInt64), "currency": "CNY", "pin": "123456"}).want(201)
		if big.str("status") != "declined" || big.str("reason") != "exceeds_limit" {
			t.Fatalf("payment of the largest int64: %s", big.json())
		}
		if got := cashOf(h, card); got != 10000 {
			t.Fatalf("cash purse holds %d, want 10000", got)
		}

		// What is accepted: JSON with parameters, a +json type, and no
		// Content-Type at all (as the README says).
		for i, hdr := range []map[string]string{
			{"Content-Type": "application/json; charset=utf-8"},
			{"Content-Type": "application/merge-patch+json"},
			{"Content-Type": ""},
		} {
			r := send(teller, topups, `{"amount":1,"currency":"CNY"}`, hdr)()
			r.want(201)
			if got := cashOf(h, card); got != 10001+int64(i) {
				t.Fatalf("after accepted top-up %d (%v): cash %d", i, hdr, got)
			}
		}
		// Bodiless writes and whole-hold captures still come empty.
		hold := h.post(teller, "/v1/holds", map[string]any{"card": card, "channel": "retail", "merchant": "SHOP",
			"amount": 300, "currency": "CNY"}).want(201).str("id")
		h.req("POST", "/v1/holds/"+hold+"/capture", h.tokens[teller], nil, map[string]string{"Idempotency-Key": h.newKey()}).want(200)
		h.req("POST", "/v1/cards/"+card+"/freeze", h.tokens[risk], nil, map[string]string{"Idempotency-Key": h.newKey()}).want(200)
		h.req("POST", "/v1/cards/"+card+"/unfreeze", h.tokens[risk], "", map[string]string{"Idempotency-Key": h.newKey()}).want(200)
		if got := cashOf(h, card); got != 10003-300 {
			t.Fatalf("cash purse holds %d, want %d", got, 10003-300)
		}
		h.verify()
	})
}

// TestNULHolderAmidConcurrentTopUps is issue 11's reproduction: 40
// concurrent 1-fen top-ups and one card issue whose holder's name holds
// U+0000. On PostgreSQL the NUL failed the whole batch's commit, and the
// top-ups that shared it got 503; now the bad request is refused at the
// edge and the others are carried out, on both drivers alike.
func TestNULHolderAmidConcurrentTopUps(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h, card := edgeHub(t, st)
		before := cashOf(h, card)
		cardsBefore, err := st.CountRows(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		const n = 40
		var wg sync.WaitGroup
		status := make([]int, n)
		bodies := make([]string, n)
		var bad *reply
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := h.post(teller, "/v1/cards/"+card+"/topups", map[string]any{"amount": 1, "currency": "CNY"})
				status[i], bodies[i] = r.status, string(r.raw)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			bad = h.post(teller, "/v1/cards", map[string]any{"holder": map[string]any{
				"name": "Han\x00Meimei", "id_type": "resident_id", "id_number": "110101199003071234"}})
		}()
		close(start)
		wg.Wait()
		for i, s := range status {
			if s != 201 {
				t.Errorf("top-up %d: status %d: %s", i, s, bodies[i])
			}
		}
		bad.t = t
		bad.problem(400, "invalid_request", "holder.name")
		if got := cashOf(h, card); got != before+n {
			t.Fatalf("cash purse holds %d, want %d", got, before+n)
		}
		after, err := st.CountRows(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if after["cards"] != cardsBefore["cards"] {
			t.Fatalf("cards: %d rows, was %d", after["cards"], cardsBefore["cards"])
		}
		h.verify()
	})
}

// TestServiceRefusesBadText: plugins reach the card service without the
// API, so the service refuses the same text itself, before the writer, on
// both drivers.
func TestServiceRefusesBadText(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h, card := edgeHub(t, st)
		svc := h.app.Service()
		ctx := context.Background()
		call := func(key string) cards.Call {
			return cards.Call{Operator: "teller1", Role: "teller", IdempotencyKey: key}
		}
		cases := []struct {
			name  string
			do    func() error
			field string
		}{
			{"holder name with a NUL", func() error {
				_, err := svc.Issue(ctx, call("s1"), cards.IssueRequest{Holder: cards.Holder{Name: "Li\x00", IDType: "passport", IDNumber: "E1"}})
				return err
			}, "holder.name"},
			{"holder name not UTF-8", func() error {
				_, err := svc.Issue(ctx, call("s2"), cards.IssueRequest{Holder: cards.Holder{Name: "Li\xff", IDType: "passport", IDNumber: "E1"}})
				return err
			}, "holder.name"},
			{"merchant name with a NUL", func() error {
				_, err := svc.AddMerchant(ctx, cards.MerchantRequest{ID: "M2", Name: "a\x00", MCC: "5411", SettlementAccount: "1"})
				return err
			}, "name"},
			{"payment at a merchant id with a NUL", func() error {
				_, err := svc.Pay(ctx, call("s3"), cards.PaymentRequest{Card: card, Channel: "retail", Merchant: "SHOP\x00", Amount: 1, Currency: "CNY"})
				return err
			}, "merchant"},
			{"decline naming a terminal with a control character", func() error {
				_, err := svc.Decline(ctx, call("s4"), cards.PaymentRequest{Card: card, Channel: "retail", Merchant: "SHOP", Terminal: "T\x1b", Amount: 1, Currency: "CNY"}, fault.BankDeclined)
				return err
			}, "terminal"},
			{"reversal memo with a NUL", func() error {
				_, err := svc.Reverse(ctx, call("s5"), cards.ReverseRequest{Transfer: 1, Memo: "x\x00"})
				return err
			}, "memo"},
			{"reversal memo too long", func() error {
				_, err := svc.Reverse(ctx, call("s6"), cards.ReverseRequest{Transfer: 1, Memo: strings.Repeat("m", cards.MaxMemoLen+1)})
				return err
			}, "memo"},
			{"bank payment with a NUL in its reference", func() error {
				_, err := svc.BankPayment(ctx, call("s7"), cards.BankPaymentRequest{MaskedCard: "622202******0128", Channel: "retail",
					Merchant: "SHOP", Amount: 1, Currency: "CNY", Approved: true, RRN: "12\x0034"})
				return err
			}, "rrn"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				before := h.snapshot()
				err := tc.do()
				if fault.CodeOf(err) != fault.InvalidRequest || fault.Problem(err, "").Field != tc.field {
					t.Fatalf("got %v, want invalid_request on %s", err, tc.field)
				}
				if d := before.diff(h.snapshot()); d != "" {
					t.Fatalf("the refused call changed the store: %s", d)
				}
			})
		}
		h.t = t
		// A memo may be several lines.
		if _, err := svc.Reverse(ctx, call("s8"), cards.ReverseRequest{Transfer: 424242, Memo: "returned\n\tunopened"}); fault.CodeOf(err) != fault.TransferNotFound {
			t.Fatalf("multi-line memo: %v", err)
		}
	})
}
