package wiring_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// testPlugin builds a plugin package once per test binary and returns
// the binary and its hex SHA-256, as the hub's plugin file wants it.
func testPlugin(tb testing.TB, pkg string) (bin, sum string) {
	tb.Helper()
	bin, raw := conformancetest.Build(tb, pkg)
	return bin, hex.EncodeToString(raw)
}

// payerPlugin builds testdata/payer.
func payerPlugin(tb testing.TB) (bin, sum string) {
	tb.Helper()
	return testPlugin(tb, "./testdata/payer")
}

// pluginHub is a hub serving the payer plugin, with a merchant and a card
// holding 1,000.00.
type pluginHub struct {
	app  *wiring.Hub
	c    *client
	card string
	st   store.Store
}

func startPluginHub(t *testing.T, st store.Store) *pluginHub {
	return startPluginHubOn(t, st, bus.Config{})
}

func startPluginHubOn(t *testing.T, st store.Store, router bus.Config) *pluginHub {
	t.Helper()
	t.Cleanup(pin.SetCostForTesting(1, 8))
	bin, sum := payerPlugin(t)
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet, Router: router,
		Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{{Name: "payer", Path: bin, SHA256: sum, Channel: "retail",
			Config: json.RawMessage(`{"merchant": "M-PAYER"}`)}},
		PluginHost: pluginhost.Options{RestartBackoff: pluginhost.Backoff{Initial: 50 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c.must("POST", "/v1/merchants", map[string]any{"id": "M-PAYER", "name": "Payer", "mcc": "5411", "settlement_account": "1"}, 201)
	card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
	c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 100000, "currency": "CNY"}, 201)
	return &pluginHub{app: app, c: c, card: card, st: st}
}

// send posts a message for the payer plugin with the given idempotency key.
func (h *pluginHub) send(typ, key string, payload map[string]any) (int, map[string]any) {
	h.c.t.Helper()
	body := map[string]any{"type": typ, "payload": payload}
	st, m, err := h.c.doKey("POST", "/v1/plugins/payer/messages", key, body)
	if err != nil {
		h.c.t.Fatal(err)
	}
	return st, m
}

// receipt returns the hub's answer carried in the plugin's receipt.
func receipt(t *testing.T, m map[string]any) (hubBody map[string]any, duplicate bool) {
	t.Helper()
	replies, _ := m["replies"].([]any)
	if len(replies) != 1 {
		t.Fatalf("want one reply, got %v", m)
	}
	p := replies[0].(map[string]any)["payload"].(map[string]any)
	return p["hub"].(map[string]any), p["duplicate"].(bool)
}

// matches checks a decoded answer against its published schema.
func matches(t *testing.T, schema string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate(schema, b); err != nil {
		t.Errorf("answer does not match %s: %v\n%s", schema, err, b)
	}
}

func (h *pluginHub) balance() float64 {
	return h.c.must("GET", "/v1/cards/"+h.card, nil, 200)["balance"].(float64)
}

func (h *pluginHub) verify(t *testing.T) {
	t.Helper()
	rep, err := ledger.Verify(context.Background(), h.st)
	if err != nil || !rep.OK() {
		t.Fatalf("ledger verify: %v %v", err, rep.Problems)
	}
}

func (h *pluginHub) metric(t *testing.T, line string) bool {
	t.Helper()
	resp, err := http.Get(h.c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line)
}

// TestPluginMessagesReachTheLedger sends the payer plugin a charge through
// the API and the router; the plugin submits card.payment.v1, which the hub
// applies. The same message delivered twice is one payment; a reversal by
// the payment's key undoes it.
func TestPluginMessagesReachTheLedger(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startPluginHub(t, st)
		status, m := h.send("payer.charge.v1", "c1", map[string]any{"key": "r1", "card": h.card, "amount": 1250})
		if status != 200 {
			t.Fatalf("charge: %d %v", status, m)
		}
		matches(t, "api-plugin-message", m)
		body, dup := receipt(t, m)
		matches(t, "api-payment", body)
		if body["status"] != "approved" || body["balance"].(float64) != 98750 || body["channel"] != "retail" || dup {
			t.Fatalf("hub answer %v duplicate=%v", body, dup)
		}
		// Delivered again: the plugin submits the same key, the hub answers
		// the first payment again.
		_, m = h.send("payer.charge.v1", "c1", map[string]any{"key": "r1", "card": h.card, "amount": 1250})
		body2, dup := receipt(t, m)
		if !dup || body2["id"] != body["id"] {
			t.Fatalf("second delivery: %v duplicate=%v, want the first payment %v replayed", body2, dup, body["id"])
		}
		if b := h.balance(); b != 98750 {
			t.Fatalf("balance after two deliveries of one charge: %v", b)
		}
		// The plugin's writes are audited and idempotent under its own name.
		audit := h.c.must("GET", "/v1/audit?limit=50", nil, 200)["entries"].([]any)
		found := false
		for _, e := range audit {
			if e.(map[string]any)["operator"] == "plugin:payer" {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit entry by plugin:payer in %v", audit)
		}

		_, m = h.send("payer.reverse.v1", "rv1", map[string]any{"key": "r1"})
		rev, _ := receipt(t, m)
		if rev["reverses"] != body["id"] {
			t.Fatalf("reversal %v does not reverse %v", rev, body["id"])
		}
		if b := h.balance(); b != 100000 {
			t.Fatalf("balance after the reversal: %v", b)
		}
		// Reversing a payment that never happened names the problem.
		status, m = h.send("payer.reverse.v1", "rv2", map[string]any{"key": "never"})
		if status != 404 || m["code"] != "transfer_not_found" || m["field"] != "payment_key" {
			t.Fatalf("reversal of an unknown payment: %d %v", status, m)
		}
		h.verify(t)

		list := h.c.must("GET", "/v1/plugins", nil, 200)
		matches(t, "api-plugins", list)
		plugins := list["plugins"].([]any)
		if len(plugins) != 1 || plugins[0].(map[string]any)["state"] != "running" || plugins[0].(map[string]any)["channel"] != "retail" {
			t.Fatalf("plugins: %v", plugins)
		}
	})
}

// TestPluginOverNATS routes a plugin's payment through NATS JetStream, as
// hub nodes sharing one store would.
func TestPluginOverNATS(t *testing.T) {
	url := os.Getenv("CITYCARD_TEST_NATS")
	if url == "" {
		t.Skip("CITYCARD_TEST_NATS not set: skipping the NATS JetStream routing test")
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("CITYCARD_TEST_NATS is set but NATS is unreachable: %v", err)
	}
	stream := fmt.Sprintf("HUBTEST_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		defer nc.Close()
		if js, err := nc.JetStream(); err == nil {
			_ = js.DeleteStream(stream)
		}
	})
	h := startPluginHubOn(t, storetest.OpenSQLite(t), bus.Config{Backend: bus.BackendNATS, NATSURL: url, NATSStream: stream})
	for range 2 {
		status, m := h.send("payer.charge.v1", "n1", map[string]any{"key": "n1", "card": h.card, "amount": 300})
		if status != 200 {
			t.Fatalf("charge over NATS: %d %v", status, m)
		}
		if body, _ := receipt(t, m); body["status"] != "approved" {
			t.Fatalf("hub answer %v", body)
		}
	}
	if b := h.balance(); b != 99700 {
		t.Fatalf("balance %v after one charge sent twice, want 99700", b)
	}
	h.verify(t)
}

// TestPluginHolds: a plugin pre-authorises through card.hold.v1, completes
// for less with card.capture.v1 (the rest released), cancels another with
// card.void.v1, and reads the balance with the card_balance query.
func TestPluginHolds(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startPluginHub(t, st)
		_, m := h.send("payer.preauth.v1", "p1", map[string]any{"key": "a", "card": h.card, "amount": 5000})
		hold, _ := receipt(t, m)
		matches(t, "api-payment", hold)
		if hold["status"] != "approved" {
			t.Fatalf("hold: %v", hold)
		}
		_, m = h.send("payer.balance.v1", "b1", map[string]any{"card": h.card})
		bal, _ := receipt(t, m)
		matches(t, "msg-card-balance-v1", bal)
		if bal["balance"].(float64) != 100000 || bal["available"].(float64) != 95000 {
			t.Fatalf("balance with a hold of 50.00: %v", bal)
		}
		_, m = h.send("payer.complete.v1", "c1", map[string]any{"key": "a", "amount": 3000})
		captured, _ := receipt(t, m)
		if captured["status"] != "captured" {
			t.Fatalf("capture: %v", captured)
		}
		if b := h.balance(); b != 97000 {
			t.Fatalf("balance after capturing 30.00 of a 50.00 hold: %v", b)
		}
		h.send("payer.preauth.v1", "p2", map[string]any{"key": "b", "card": h.card, "amount": 2000})
		_, m = h.send("payer.cancel.v1", "v1", map[string]any{"key": "b"})
		voided, _ := receipt(t, m)
		if voided["status"] != "voided" {
			t.Fatalf("void: %v", voided)
		}
		_, m = h.send("payer.balance.v1", "b2", map[string]any{"card": h.card})
		if bal, _ = receipt(t, m); bal["available"].(float64) != 97000 {
			t.Fatalf("available after the void: %v", bal)
		}
		// Completing a hold that was never made names the problem.
		status, m := h.send("payer.complete.v1", "c2", map[string]any{"key": "never", "amount": 100})
		if status != 404 || m["code"] != "hold_not_found" || m["field"] != "hold_key" {
			t.Fatalf("capture of no hold: %d %v", status, m)
		}
		h.verify(t)
	})
}

// TestBankCardPayments: a plugin's card.payment.v1 for a bank card number
// goes to the bank acquirer plugin, and the hub records its answer: an
// approval is owed by the acquirer to the merchant, a decline is an answer
// with the registry's code, the card is kept masked, and a resend is the
// first answer without the acquirer being asked again.
func TestBankCardPayments(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		sh := startSplitHub(t, st, time.Hour)
		h, app, c := sh.pluginHub, sh.app, sh.c
		c.must("POST", "/v1/merchants", map[string]any{"id": "M-PAYER", "name": "Payer", "mcc": "5411", "settlement_account": "1"}, 201)
		c.must("POST", "/v1/terminals", map[string]any{"id": "T-PAYER", "merchant": "M-PAYER"}, 201)
		const pan = "6222020000000000019"
		bank := func(key, card string, amount int) map[string]any {
			return map[string]any{"key": key, "card": card, "amount": amount, "terminal": "T-PAYER", "expiry": "3012"}
		}
		// Without the expiry the acquirer needs, the channel cannot take the card.
		_, m := h.send("payer.charge.v1", "k0", map[string]any{"key": "b0", "card": pan, "amount": 3000})
		if d, _ := receipt(t, m); d["status"] != "declined" || d["reason"] != "invalid_request" {
			t.Fatalf("bank card without expiry: %v", d)
		}
		_, m = h.send("payer.charge.v1", "k1", bank("b1", pan, 3000))
		paid, dup := receipt(t, m)
		matches(t, "api-payment", paid)
		legs, _ := paid["legs"].([]any)
		if paid["status"] != "approved" || paid["card"] != "622202*********0019" || dup || len(legs) != 1 ||
			legs[0].(map[string]any)["purse"] != "bank_card" {
			t.Fatalf("bank card payment: %v", paid)
		}
		id, _ := strconv.ParseInt(paid["id"].(string), 10, 64)
		tr, err := st.GetTransfer(context.Background(), id)
		if err != nil || tr.Amount != 3000 || tr.Card != "" || strings.Contains(tr.Memo, pan) || !strings.Contains(tr.Memo, "622202") {
			t.Fatalf("transfer %+v %v", tr, err)
		}
		// Resent: the first answer, and the acquirer asked once.
		_, m = h.send("payer.charge.v1", "k1", bank("b1", pan, 3000))
		again, dup := receipt(t, m)
		if !dup || again["id"] != paid["id"] {
			t.Fatalf("resent: %v duplicate=%v", again, dup)
		}
		// Declines carry the registry's code for the acquirer's answer.
		_, m = h.send("payer.charge.v1", "k2", bank("b2", "6222020000000000051", 100))
		if d, _ := receipt(t, m); d["status"] != "declined" || d["reason"] != "insufficient_funds" {
			t.Fatalf("51: %v", d)
		}
		_, m = h.send("payer.charge.v1", "k3", bank("b3", "6222020000000000054", 100))
		if d, _ := receipt(t, m); d["status"] != "declined" || d["reason"] != "card_expired" {
			t.Fatalf("54: %v", d)
		}
		replies, err := app.Send(context.Background(), "fakebank", sdkMessage("fakebank.count.v1", map[string]any{}))
		if err != nil {
			t.Fatal(err)
		}
		var counts struct {
			Authorised int `json:"authorised"`
		}
		if err := json.Unmarshal(replies[0].Payload, &counts); err != nil || counts.Authorised != 3 {
			t.Fatalf("the acquirer was asked %d times for three payments, one resent: %v", counts.Authorised, err)
		}
		h.verify(t)
	})
}

// TestPluginSchemaRefusal: the payer declares card.payment.v1 with a lax
// schema of its own and sends an amount as a string. The hub checks the
// payload against its own schema, refuses it with the schema error, and
// publishes nothing.
func TestPluginSchemaRefusal(t *testing.T) {
	h := startPluginHub(t, storetest.OpenSQLite(t))
	before := h.balance()
	status, m := h.send("payer.smuggle.v1", "s1", map[string]any{"key": "s1", "card": h.card})
	if status != 422 || m["code"] != "schema_invalid" || m["field"] != "/payload/amount" ||
		!strings.Contains(m["detail"].(string), "msg-card-payment-v1") {
		t.Fatalf("smuggled payment: %d %v", status, m)
	}
	if h.balance() != before {
		t.Fatal("a refused message changed the balance")
	}
	if !h.metric(t, `citycard_gateway_submissions_total{outcome="refused",plugin="payer",type="card.payment.v1"} 1`) {
		t.Error("the refusal is not counted")
	}
	if h.metric(t, `citycard_gateway_submissions_total{outcome="published",plugin="payer",type="card.payment.v1"}`) {
		t.Error("the refused message was published on a topic")
	}
	// A message type the plugin does not handle never reaches it.
	status, m = h.send("payer.nothing.v1", "n1", map[string]any{})
	if status != 422 || m["code"] != "unsupported_message_type" {
		t.Fatalf("unknown type: %d %v", status, m)
	}
}

// TestPoisonMessageReplay: the payer panics on a message the first time it
// sees it. The router puts it in the dead letters, the API lists it, and a
// replay delivers it again: the plugin, "fixed", charges the card once.
func TestPoisonMessageReplay(t *testing.T) {
	h := startPluginHub(t, storetest.OpenSQLite(t))
	status, m := h.send("payer.flaky.v1", "f1", map[string]any{"key": "f1", "card": h.card, "amount": 700})
	if status != 503 || m["code"] != "unavailable" || !strings.Contains(m["detail"].(string), "dead letters") {
		t.Fatalf("poison message: %d %v", status, m)
	}
	page := h.c.must("GET", "/v1/dead-letters", nil, 200)
	matches(t, "api-dead-letters", page)
	letters := page["dead_letters"].([]any)
	if len(letters) != 1 {
		t.Fatalf("dead letters: %v", letters)
	}
	l := letters[0].(map[string]any)
	if l["topic"] != "hub.to-payer.payer.flaky.v1" || !strings.Contains(l["reason"].(string), "panicked") {
		t.Fatalf("dead letter %v", l)
	}
	if h.balance() != 100000 {
		t.Fatal("the poison message charged the card")
	}
	id := fmt.Sprint(l["id"])
	matches(t, "api-replay", h.c.must("POST", "/v1/dead-letters/"+id+"/replay", map[string]any{}, 200))
	if b := h.balance(); b != 99300 {
		t.Fatalf("balance after the replay: %v, want 99300", b)
	}
	l = h.c.must("GET", "/v1/dead-letters", nil, 200)["dead_letters"].([]any)[0].(map[string]any)
	if l["replayed_at"] == nil {
		t.Fatalf("the letter is not marked replayed: %v", l)
	}
	if st, m, _ := h.c.do("POST", "/v1/dead-letters/"+id+"/replay", map[string]any{}); st != 409 || m["code"] != "conflict" {
		t.Fatalf("second replay: %d %v", st, m)
	}
	if st, m, _ := h.c.do("POST", "/v1/dead-letters/999/replay", map[string]any{}); st != 404 {
		t.Fatalf("replay of no letter: %d %v", st, m)
	}
	// A bank card's number and a PIN block never rest in a dead letter in
	// clear; the city card's number stays whole, so its letter replays.
	const pan, block = "6222020000000000026", "0123456789ABCDEF"
	h.send("payer.flaky.v1", "f2", map[string]any{"key": "f2", "card": pan, "amount": 700, "pin_block": block})
	stored, err := h.st.ListDeadLetters(context.Background(), store.DeadLetterPage{Limit: 10})
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored letters %d %v", len(stored), err)
	}
	if raw := string(stored[0].Payload); !strings.Contains(raw, h.card) {
		t.Fatalf("the city card's letter lost its card number: %s", raw)
	}
	if raw := string(stored[1].Payload); strings.Contains(raw, pan) || strings.Contains(raw, block) || !strings.Contains(raw, "622202*********0026") {
		t.Fatalf("the bank card's letter as stored: %s", raw)
	}
	h.verify(t)
}

// TestPluginKilledUnderTraffic SIGKILLs the payer plugin while charges
// stream through it. Every charge is answered, completed or with a
// retryable error; resent with the same key, each is completed; in the end
// every charge is in the ledger exactly once and the ledger verifies.
func TestPluginKilledUnderTraffic(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startPluginHub(t, st)
		const workers, each, amount = 8, 25, 10
		var (
			mu      sync.Mutex
			retry   []string
			done    int
			unknown []string
		)
		var wg sync.WaitGroup
		started := make(chan struct{})
		var once sync.Once
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					key := fmt.Sprintf("w%d-%d", w, i)
					status, m := h.send("payer.charge.v1", key, map[string]any{"key": key, "card": h.card, "amount": amount})
					mu.Lock()
					switch {
					case status == 200:
						done++
					case status == 503 || status == 504:
						retry = append(retry, key)
					default:
						unknown = append(unknown, fmt.Sprintf("%s: %d %v", key, status, m))
					}
					mu.Unlock()
					once.Do(func() { close(started) })
				}
			})
		}
		<-started
		var pid int
		for _, p := range h.app.Plugins() {
			pid = p.PID
		}
		if pid == 0 {
			t.Fatal("no plugin process")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if len(unknown) > 0 {
			t.Fatalf("answers that are neither done nor retryable: %v", unknown)
		}
		t.Logf("%d charges completed through the crash, %d answered retryable", done, len(retry))
		for _, key := range retry {
			deadline := time.Now().Add(30 * time.Second)
			for {
				status, m := h.send("payer.charge.v1", key, map[string]any{"key": key, "card": h.card, "amount": amount})
				if status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("charge %s never completed: %d %v", key, status, m)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if b := h.balance(); b != 100000-workers*each*amount {
			t.Fatalf("balance %v after %d charges of %d, want %d", b, workers*each, amount, 100000-workers*each*amount)
		}
		ps := h.app.Plugins()
		if ps[0].Restarts < 1 || ps[0].PID == pid {
			t.Fatalf("the plugin was not restarted: %+v", ps[0])
		}
		h.verify(t)
	})
}

// sdkMessage is a message of typ with payload marshalled to JSON.
func sdkMessage(typ string, payload any) sdk.Message {
	b, _ := json.Marshal(payload)
	return sdk.Message{Type: typ, Payload: b}
}
