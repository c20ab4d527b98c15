package unionpay_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/plugintest"
)

// masterKey is the link's master key in the tests, shared with the switch.
const masterKey = "0123456789ABCDEFFEDCBA9876543210"

// pinZoneKey is the PIN zone key the tests' POS front end enciphers PINs under.
const pinZoneKey = "89ABCDEF0123456776543210FEDCBA98"

// topKey is the token vault's top key in the tests.
const topKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

const (
	merchant = "898310048990001"
	terminal = "00010001"
)

// card returns a 16-digit card number starting with prefix, with a good
// Luhn check digit.
func card(t testing.TB, prefix string) string {
	t.Helper()
	for len(prefix) < 15 {
		prefix += "0"
	}
	d, err := cardcrypto.LuhnCheckDigit(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(d)
}

// startSwitch starts a switch simulator on a free local port.
func startSwitch(t testing.TB) (*sim.Switch, string) {
	t.Helper()
	k, err := cardcrypto.ParseKey(masterKey)
	if err != nil {
		t.Fatal(err)
	}
	sw := sim.New(sim.Options{MasterKey: k})
	addr, stop, err := sw.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sw, addr
}

// responseTimeout is how long the plugin waits for the switch's answer in
// these tests; a test that needs a timeout holds the switch's answers with
// hold rather than racing a delay against it.
const responseTimeout = 300 * time.Millisecond

// hold makes sw hold its answers until release is called, or the test ends.
func hold(t testing.TB, sw *sim.Switch) (release func()) {
	t.Helper()
	release = sw.HoldAnswers()
	t.Cleanup(release) // before the switch stops, which waits for its answers
	return release
}

// droppedLate is what the plugin logs when a late answer arrives.
const droppedLate = "dropped a response for an unknown STAN"

// startLogged is start with the plugin's log kept in the returned buffer.
func startLogged(t testing.TB, cfg map[string]any) (*plugintest.Harness, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err := h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the link signs on", func() bool { return h.Health() == nil })
	return h, logs
}

// waitDropped waits until the plugin has logged n late answers as dropped.
func waitDropped(t testing.TB, logs *syncBuffer, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d late answers are dropped", n), func() bool { return strings.Count(logs.String(), droppedLate) >= n })
}

// config is the plugin's configuration against the switch at addr, with
// short timers so the tests run quickly, the PIN zone key, and the vault's
// top key in a file beside the state directory.
func config(addr, dir string) map[string]any {
	keyFile := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".topkey")
	_ = os.WriteFile(keyFile, []byte(topKey), 0o600)
	return map[string]any{
		"switch_addr": addr, "master_key": masterKey, "acquirer_id": "48020000",
		"link_terminal": "CITYHUB1", "link_merchant": "CITYCARDHUB0001", "state_dir": dir,
		"response_timeout_ms": responseTimeout.Milliseconds(), "echo_interval_ms": 5000, "reconnect_max_ms": 200,
		"pin_zone_key": pinZoneKey, "key_store": map[string]any{"file": keyFile},
	}
}

// pinBlock is pin for pan enciphered under the PIN zone key, in hex, as
// the city's POS front end sends it.
func pinBlock(t testing.TB, pin, pan string) string {
	t.Helper()
	zpk, err := cardcrypto.ParseKey(pinZoneKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cardcrypto.ParsePIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cardcrypto.ParsePAN(pan)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cardcrypto.EncryptPINBlock(zpk, p, c)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// send handles m and decodes its one reply of type typ into out.
func send(t testing.TB, h *plugintest.Harness, m sdk.Message, typ string, out any) {
	t.Helper()
	replies, err := h.Handle(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != typ {
		t.Fatalf("replies = %+v", replies)
	}
	if err := json.Unmarshal(replies[0].Payload, out); err != nil {
		t.Fatal(err)
	}
}

// msg is a message of typ with payload under key.
func msg(typ, key string, payload map[string]any) sdk.Message {
	m := plugintest.NewMessage(typ, payload)
	m.IdempotencyKey = key
	return m
}

// start runs the plugin in-process against the switch and waits until it
// has signed on.
func start(t testing.TB, cfg map[string]any) *plugintest.Harness {
	t.Helper()
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.DiscardHandler)))
	if err := h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the link signs on", func() bool { return h.Health() == nil })
	return h
}

// eventually waits up to 5 s for ok.
func eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// authMsg is an authorisation of amount on pan under key.
func authMsg(key, pan, expiry string, amount int64) sdk.Message {
	m := plugintest.NewMessage(unionpay.TypeAuthorize, map[string]any{
		"pan": pan, "expiry": expiry, "amount": amount, "currency": "CNY", "merchant": merchant, "terminal": terminal,
	})
	m.IdempotencyKey = key
	return m
}

func authorise(t testing.TB, h *plugintest.Harness, m sdk.Message) unionpay.Authorization {
	t.Helper()
	replies, err := h.Handle(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != unionpay.TypeAuthorization {
		t.Fatalf("replies = %+v", replies)
	}
	var a unionpay.Authorization
	if err := json.Unmarshal(replies[0].Payload, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func reverse(t testing.TB, h *plugintest.Harness, key string) string {
	t.Helper()
	m := plugintest.NewMessage(unionpay.TypeReverse, map[string]any{"authorization_key": key})
	m.IdempotencyKey = "rev-" + key
	replies, err := h.Handle(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != unionpay.TypeReversal {
		t.Fatalf("replies = %+v", replies)
	}
	var r unionpay.ReversalReply
	if err := json.Unmarshal(replies[0].Payload, &r); err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// applied counts the reversals the switch applied to the authorisation
// with stan.
func applied(sw *sim.Switch, stan string) int {
	n := 0
	for _, r := range sw.Reversals() {
		if r.STAN == stan && r.Applied {
			n++
		}
	}
	return n
}
