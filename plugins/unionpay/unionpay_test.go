package unionpay_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk/plugintest"
)

func TestSignOnAndApprove(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	if n := sw.SignOns(); n != 1 {
		t.Errorf("sign-ons = %d, want 1", n)
	}
	pan := card(t, "622202")
	a := authorise(t, h, authMsg("pos-1-000001", pan, "3012", 12_345))
	if a.Status != unionpay.Approved || a.ResponseCode != "00" || len(a.AuthCode) != 6 || len(a.RRN) != 12 || len(a.STAN) != 6 {
		t.Errorf("authorisation = %+v", a)
	}
	if a.MaskedPAN != pan[:6]+"******"+pan[12:] || strings.Contains(a.MaskedPAN, pan[6:12]) {
		t.Errorf("masked pan = %q", a.MaskedPAN)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit-12_345 {
		t.Errorf("limit = %d, want %d", got, sim.DefaultLimit-12_345)
	}
	auths := sw.Authorisations()
	if len(auths) != 1 || auths[0].STAN != a.STAN || auths[0].Amount != 12_345 || auths[0].Terminal != terminal {
		t.Errorf("the switch saw %+v", auths)
	}
}

func TestDeclines(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	poor, wrongPIN := card(t, "622203"), card(t, "622204")
	sw.SetCard(poor, sim.Card{Limit: 1_000})
	sw.SetCard(wrongPIN, sim.Card{Limit: 100_000, WrongPIN: true})
	good := card(t, "622205")
	bad := good[:15] + string('0'+(good[15]-'0'+1)%10) // wrong check digit
	for _, tc := range []struct {
		name, pan, expiry string
		amount            int64
		rc                string
		atSwitch          bool
	}{
		{"insufficient funds", poor, "3012", 1_001, "51", true},
		{"invalid card", bad, "3012", 100, "14", false},
		{"expired", good, "2001", 100, "54", true},
		{"wrong PIN", wrongPIN, "3012", 100, "55", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(sw.Authorisations())
			a := authorise(t, h, authMsg("decline-"+tc.rc, tc.pan, tc.expiry, tc.amount))
			if a.Status != unionpay.Declined || a.ResponseCode != tc.rc || a.AuthCode != "" {
				t.Errorf("authorisation = %+v, want declined %s", a, tc.rc)
			}
			if got := len(sw.Authorisations()) - before; (got == 1) != tc.atSwitch {
				t.Errorf("%d authorisations at the switch, want at switch %v", got, tc.atSwitch)
			}
		})
	}
	if got := sw.Limit(poor); got != 1_000 {
		t.Errorf("limit after a decline = %d", got)
	}
}

func TestRedeliveryIsOneAuthorisation(t *testing.T) {
	sw, addr := startSwitch(t)
	sw.SetDelay(responseTimeout / 6) // so the deliveries overlap, and the first is answered in time
	h := start(t, config(addr, t.TempDir()))
	m := authMsg("pos-2-000007", card(t, "622206"), "3012", 500)
	var wg sync.WaitGroup
	answers := make([]unionpay.Authorization, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = authorise(t, h, m)
		}()
	}
	wg.Wait()
	again := authorise(t, h, m)
	for _, a := range append(answers, again) {
		if a != answers[0] || a.Status != unionpay.Approved {
			t.Errorf("answer %+v, first %+v", a, answers[0])
		}
	}
	if n := len(sw.Authorisations()); n != 1 {
		t.Errorf("%d authorisations at the switch, want 1", n)
	}
}

func TestTimeoutDeclinesAndReversesOnce(t *testing.T) {
	sw, addr := startSwitch(t)
	h, logs := startLogged(t, config(addr, t.TempDir()))
	pan := card(t, "622207")
	release := hold(t, sw) // the 0210 waits until the plugin has timed out
	m := authMsg("pos-3-000001", pan, "3012", 8_800)
	a := authorise(t, h, m)
	if a.Status != unionpay.Declined || a.ResponseCode != "68" {
		t.Fatalf("authorisation = %+v, want declined 68", a)
	}
	eventually(t, "the switch applies the reversal", func() bool { return applied(sw, a.STAN) == 1 })
	// The late 0210 arrives after the timeout and is dropped; the answer stands.
	release()
	waitDropped(t, logs, 1)
	if again := authorise(t, h, m); again != a {
		t.Errorf("redelivery answered %+v, first %+v", again, a)
	}
	if got := reverse(t, h, "pos-3-000001"); got != unionpay.Reversed {
		t.Errorf("reverse after the automatic reversal = %s", got)
	}
	if n, r := len(sw.Authorisations()), applied(sw, a.STAN); n != 1 || r != 1 {
		t.Errorf("%d authorisations and %d applied reversals at the switch, want 1 and 1", n, r)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d, want it restored to %d", got, sim.DefaultLimit)
	}
	if rs := sw.Reversals(); len(rs) != 1 || rs[0].Reason != "98" {
		t.Errorf("reversals = %+v", rs)
	}
}

func TestDroppedResponseIsReversed(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	sw.DropAuthorisations(1)
	a := authorise(t, h, authMsg("pos-4-000001", card(t, "622208"), "3012", 100))
	if a.ResponseCode != "68" {
		t.Fatalf("authorisation = %+v", a)
	}
	eventually(t, "the switch applies the reversal", func() bool { return applied(sw, a.STAN) == 1 })
}

func TestWrongMACFromTheSwitchIsReversed(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622219")
	sw.CorruptMACs(1)
	a := authorise(t, h, authMsg("pos-10-000001", pan, "3012", 900))
	if a.Status != unionpay.Declined || a.ResponseCode != "A0" {
		t.Fatalf("authorisation = %+v, want declined A0", a)
	}
	eventually(t, "the switch applies the reversal", func() bool { return applied(sw, a.STAN) == 1 })
	if rs := sw.Reversals(); len(rs) != 1 || rs[0].Reason != "A0" {
		t.Errorf("reversals = %+v", rs)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d, want it restored", got)
	}
}

func TestReverseAnApproval(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622209")
	a := authorise(t, h, authMsg("pos-5-000001", pan, "3012", 2_000))
	if got := reverse(t, h, "pos-5-000001"); got != unionpay.Reversed {
		t.Fatalf("reverse = %s", got)
	}
	if got := reverse(t, h, "pos-5-000001"); got != unionpay.Reversed {
		t.Errorf("reverse again = %s", got)
	}
	if n := applied(sw, a.STAN); n != 1 || len(sw.Reversals()) != 1 {
		t.Errorf("reversals at the switch = %+v", sw.Reversals())
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d", got)
	}
	if got := reverse(t, h, "never-authorised"); got != unionpay.UnknownOriginal {
		t.Errorf("reverse of an unknown key = %s", got)
	}
}

func TestReversalAcrossALinkDrop(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	a := authorise(t, h, authMsg("pos-6-000001", card(t, "622210"), "3012", 3_000))
	sw.HangUpOnReversals(1)
	if got := reverse(t, h, "pos-6-000001"); got != unionpay.Queued && got != unionpay.Reversed {
		t.Fatalf("reverse = %s", got)
	}
	eventually(t, "the reversal is resent after the link comes back", func() bool { return applied(sw, a.STAN) == 1 })
	if n := sw.SignOns(); n != 2 {
		t.Errorf("sign-ons = %d, want 2", n)
	}
	if got := reverse(t, h, "pos-6-000001"); got != unionpay.Reversed {
		t.Errorf("reverse once acknowledged = %s", got)
	}
}

func TestReversalSurvivesARestart(t *testing.T) {
	sw, addr := startSwitch(t)
	dir := t.TempDir()
	h := start(t, config(addr, dir))
	a := authorise(t, h, authMsg("pos-7-000001", card(t, "622211"), "3012", 4_000))
	sw.HangUpOnReversals(1_000_000)
	if got := reverse(t, h, "pos-7-000001"); got != unionpay.Queued {
		t.Fatalf("reverse = %s, want queued", got)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if n := applied(sw, a.STAN); n != 0 {
		t.Fatalf("applied before the restart: %d", n)
	}
	sw.HangUpOnReversals(0)
	h2 := start(t, config(addr, dir))
	eventually(t, "the restarted plugin resends the reversal", func() bool { return applied(sw, a.STAN) == 1 })
	if got := reverse(t, h2, "pos-7-000001"); got != unionpay.Reversed {
		t.Errorf("reverse after the restart = %s", got)
	}
	// The journal also answers the authorisation itself after the restart.
	if again := authorise(t, h2, authMsg("pos-7-000001", card(t, "622211"), "3012", 4_000)); again != a {
		t.Errorf("redelivery after the restart answered %+v, first %+v", again, a)
	}
	b := authorise(t, h2, authMsg("pos-7-000002", card(t, "622211"), "3012", 100))
	if b.STAN <= a.STAN {
		t.Errorf("STAN %s after the restart does not follow %s", b.STAN, a.STAN)
	}
	if n := len(sw.Authorisations()); n != 2 {
		t.Errorf("%d authorisations at the switch, want 2", n)
	}
}

func TestKeepAliveAndReconnect(t *testing.T) {
	sw, addr := startSwitch(t)
	cfg := config(addr, t.TempDir())
	cfg["echo_interval_ms"] = 100
	h := start(t, cfg)
	eventually(t, "two echo tests", func() bool { return sw.Echoes() >= 2 })
	sw.DropConnections()
	eventually(t, "a second sign-on", func() bool { return sw.SignOns() == 2 && h.Health() == nil })
	if a := authorise(t, h, authMsg("pos-8-000001", card(t, "622212"), "3012", 100)); a.Status != unionpay.Approved {
		t.Errorf("authorisation after the reconnect = %+v", a)
	}
}

func TestRefusals(t *testing.T) {
	_, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	m := authMsg("", card(t, "622213"), "3012", 100)
	if _, err := h.Handle(m); err == nil || !strings.Contains(err.Error(), "idempotency_key_required") {
		t.Errorf("no idempotency key: %v", err)
	}
	bad := plugintest.NewMessage(unionpay.TypeAuthorize, map[string]any{"pan": "6222", "expiry": "3012", "amount": 1,
		"currency": "CNY", "merchant": merchant, "terminal": terminal})
	bad.IdempotencyKey = "k"
	if _, err := h.Handle(bad); err == nil || !strings.Contains(err.Error(), "schema_invalid") {
		t.Errorf("short pan: %v", err)
	}
	if err := h.Configure(map[string]any{"switch_addr": addr}); err == nil {
		t.Error("an incomplete configuration was accepted")
	}
}

func TestNoSwitchIsRetryable(t *testing.T) {
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.DiscardHandler)))
	if err := h.Configure(config("127.0.0.1:1", t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if h.Health() == nil {
		t.Error("healthy without a switch")
	}
	_, err := h.Handle(authMsg("pos-9-000001", card(t, "622214"), "3012", 100))
	if err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("with the switch gone: %v", err)
	}
}

// TestNoCardDataInLogsOrJournal runs an approval, a timeout and a reversal
// and looks for the card number, the PIN block and the master key in the
// plugin's log and journal.
func TestNoCardDataInLogsOrJournal(t *testing.T) {
	sw, addr := startSwitch(t)
	dir := t.TempDir()
	var logs syncBuffer
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err := h.Configure(config(addr, dir)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the link signs on", func() bool { return h.Health() == nil })
	pan := card(t, "622218")
	pinBlock := pinBlock(t, "98765432109", pan)
	m := authMsg("secret-1", pan, "3012", 100)
	m.Payload = []byte(`{"pan":"` + pan + `","expiry":"3012","amount":100,"currency":"CNY","merchant":"` + merchant +
		`","terminal":"` + terminal + `","pin_block":"` + pinBlock + `","track2":"` + pan + `=30121010000000000"}`)
	if a := authorise(t, h, m); a.Status != unionpay.Approved {
		t.Fatalf("authorisation = %+v", a)
	}
	reverse(t, h, "secret-1")
	// A linked card: tokenised, paid with by token and PIN, asked for its balance.
	var tok unionpay.Token
	send(t, h, msg(unionpay.TypeTokenize, "secret-tok", map[string]any{"pan": pan, "expiry": "3012"}), unionpay.TypeToken, &tok)
	if a := answer(t, h, msg(unionpay.TypeAuthorize, "secret-3", map[string]any{"token": tok.Token, "amount": 100, "currency": "CNY",
		"merchant": merchant, "terminal": terminal, "pin_block": pinBlock})); a.Status != unionpay.Approved {
		t.Fatalf("authorisation by token = %+v", a)
	}
	answer(t, h, msg(unionpay.TypeBalance, "secret-4", map[string]any{"token": tok.Token, "pin_block": pinBlock}))
	if a := answer(t, h, cancelMsg("secret-5", "secret-3", "refund", 50)); a.Status != unionpay.Approved {
		t.Fatalf("refund = %+v", a)
	}
	release := hold(t, sw) // so the authorisation times out
	if a := authorise(t, h, authMsg("secret-2", pan, "3012", 100)); a.ResponseCode != "68" {
		t.Fatalf("authorisation held at the switch = %+v, want a timeout", a)
	}
	eventually(t, "both reversals are applied", func() bool { return len(sw.Reversals()) == 2 })
	release()
	waitDropped(t, &logs, 1)
	journal, err := os.ReadFile(filepath.Join(dir, "unionpay.journal"))
	if err != nil {
		t.Fatal(err)
	}
	vault, err := os.ReadFile(filepath.Join(dir, "unionpay.vault"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"log": logs.String(), "journal": string(journal), "vault": string(vault)} {
		for _, secret := range []string{pan, pinBlock, strings.ToUpper(pinBlock), masterKey, strings.ToLower(masterKey),
			pinZoneKey, strings.ToLower(pinZoneKey), topKey, "98765432109"} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s holds a secret (%d characters)", name, len(secret))
			}
		}
	}
	if !strings.Contains(logs.String(), pan[:6]+"******"+pan[12:]) {
		t.Errorf("the log does not name the card masked:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the plugin's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReversalBeforeItsAuthorisation: the hub gives up on an authorisation
// (the plugin was down) and reverses or cancels it by its key, which the
// plugin has never seen; the router then delivers the authorisation late,
// to this plugin or to it restarted. The key is buried: the authorisation
// is declined without reaching the switch, every time.
func TestReversalBeforeItsAuthorisation(t *testing.T) {
	sw, addr := startSwitch(t)
	dir := t.TempDir()
	h := start(t, config(addr, dir))
	pan := card(t, "622212")
	if got := reverse(t, h, "pos-8-000001"); got != unionpay.UnknownOriginal {
		t.Fatalf("reverse before the authorisation = %s", got)
	}
	a := authorise(t, h, authMsg("pos-8-000001", pan, "3012", 120))
	if a.Status != unionpay.Declined || a.AuthCode != "" {
		t.Errorf("authorisation after its reversal = %+v, want declined", a)
	}
	if got := reverse(t, h, "pos-8-000001"); got != unionpay.Reversed {
		t.Errorf("reverse again = %s", got)
	}
	// A cancellation naming an unknown pre-authorisation buries it too.
	c := authorise(t, h, msg(unionpay.TypeCancel, "cancel-8-000002", map[string]any{"authorization_key": "pos-8-000002",
		"kind": unionpay.CancelPreAuthCancel, "amount": 120, "currency": "CNY"}))
	if c.Status != unionpay.Declined || c.ResponseCode != "25" {
		t.Errorf("cancellation of an unknown key = %+v, want declined 25", c)
	}
	// Reversed before a restart, delivered after it.
	if got := reverse(t, h, "pos-8-000003"); got != unionpay.UnknownOriginal {
		t.Fatalf("reverse before the authorisation = %s", got)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, config(addr, dir))
	for _, key := range []string{"pos-8-000001", "pos-8-000002", "pos-8-000003", "pos-8-000003"} {
		m := authMsg(key, pan, "3012", 120)
		if key == "pos-8-000002" {
			m = msg(unionpay.TypeAuthorize, key, map[string]any{"pan": pan, "expiry": "3012", "amount": 120, "currency": "CNY",
				"merchant": merchant, "terminal": terminal, "transaction": unionpay.TransactionPreAuth})
		}
		if a := authorise(t, h2, m); a.Status != unionpay.Declined || a.AuthCode != "" {
			t.Errorf("authorisation %s after its reversal and a restart = %+v, want declined", key, a)
		}
	}
	if n := len(sw.Authorisations()); n != 0 {
		t.Errorf("%d authorisations reached the switch, want none: %+v", n, sw.Authorisations())
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d, want %d: the switch holds what nobody was answered approved", got, sim.DefaultLimit)
	}
	// Other keys are authorised as usual.
	if b := authorise(t, h2, authMsg("pos-8-000004", pan, "3012", 120)); b.Status != unionpay.Approved {
		t.Errorf("a fresh authorisation = %+v", b)
	}
}
