package sim_test

import (
	"net"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
	"github.com/moov-io/iso8583"
)

var (
	tmk, _ = cardcrypto.ParseKey("0123456789ABCDEFFEDCBA9876543210")
	env    = iso.DefaultEnvelope(0, 1)
	link   = iso.Terminal{Envelope: env, TerminalID: "CITYHUB1", MerchantID: "CITYCARDHUB0001"}
)

// client is a bare acquirer connection to the simulator.
type client struct {
	t   *testing.T
	c   net.Conn
	mak cardcrypto.Key
	pik cardcrypto.Key
}

func dial(t *testing.T, sw *sim.Switch) *client {
	t.Helper()
	addr, stop, err := sw.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, c: c}
}

func (c *client) exchange(m *iso8583.Message) *iso8583.Message {
	c.t.Helper()
	if err := (iso.Codec{}).WriteMessage(c.c, m); err != nil {
		c.t.Fatal(err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r, err := iso.Codec{}.ReadMessage(c.c)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *client) signOn() {
	c.t.Helper()
	m, err := iso.NewSignOn(link, "000001", "000001", time.Now(), iso.KeysDouble, "001")
	if err != nil {
		c.t.Fatal(err)
	}
	r := c.exchange(m)
	if rc, _ := r.GetString(iso.FieldResponseCode); rc != "00" {
		c.t.Fatalf("sign-on answered %s", rc)
	}
	f62, _ := r.GetBytes(iso.FieldReserved62)
	keys, err := cardcrypto.ParseSignOnKeys(tmk, f62)
	if err != nil {
		c.t.Fatalf("working keys: %v", err)
	}
	c.mak, c.pik = keys.MAC, keys.PIN
}

// purchase sends a 0200 for pan (set as given, even with a bad check
// digit) and returns the response code.
func (c *client) purchase(stan, pan, expiry string, amount int64, mac bool) string {
	c.t.Helper()
	d, _ := cardcrypto.LuhnCheckDigit("622202000000000")
	good, err := cardcrypto.ParsePAN("622202000000000" + string(d))
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := iso.NewPurchase(iso.Request{Terminal: link, STAN: stan, Batch: "000001", At: time.Now(),
		Card: iso.Card{PAN: good, Expiry: expiry, EntryMode: iso.EntryManualNoPIN}, Amount: amount, Currency: "156"})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := m.Field(iso.FieldPAN, pan); err != nil {
		c.t.Fatal(err)
	}
	key := c.mak
	if !mac || key == nil {
		key = make(cardcrypto.Key, 16)
	}
	if err := iso.SetMAC(m, iso.MACX919, key); err != nil {
		c.t.Fatal(err)
	}
	r := c.exchange(m)
	if mti, _ := r.GetMTI(); mti != "0210" {
		c.t.Fatalf("answered with %s", mti)
	}
	rc, _ := r.GetString(iso.FieldResponseCode)
	if rc != "A0" && rc != "97" {
		if err := iso.VerifyMAC(r, iso.MACX919, c.mak); err != nil {
			c.t.Errorf("response MAC: %v", err)
		}
	}
	return rc
}

// luhn completes a 15-digit prefix with its check digit.
func luhn(prefix string) string {
	d, _ := cardcrypto.LuhnCheckDigit(prefix)
	return prefix + string(d)
}

func TestRules(t *testing.T) {
	rich, marked := luhn("622202111111111"), luhn("622202222222222")
	bad := rich[:15] + string('0'+(rich[15]-'0'+1)%10)
	sw := sim.New(sim.Options{MasterKey: tmk, Now: func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }})
	sw.SetCard(rich, sim.Card{Limit: 5_000})
	sw.SetCard(marked, sim.Card{Limit: 5_000, WrongPIN: true})
	c := dial(t, sw)
	if rc := c.purchase("000009", rich, "3012", 100, true); rc != "97" {
		t.Errorf("before sign-on: %s, want 97", rc)
	}
	c.signOn()
	for _, tc := range []struct {
		name, stan, pan, expiry string
		amount                  int64
		mac                     bool
		want                    string
	}{
		{"approved", "000010", rich, "3012", 4_000, true, "00"},
		{"over the remaining limit", "000011", rich, "3012", 1_001, true, "51"},
		{"bad check digit", "000012", bad, "3012", 1, true, "14"},
		{"expired", "000013", rich, "2610", 1, true, "54"},
		{"wrong PIN", "000014", marked, "3012", 1, true, "55"},
		{"wrong MAC", "000015", rich, "3012", 1, false, "A0"},
		{"duplicate STAN", "000010", rich, "3012", 1, true, "94"},
	} {
		if got := c.purchase(tc.stan, tc.pan, tc.expiry, tc.amount, tc.mac); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := sw.Limit(rich); got != 1_000 {
		t.Errorf("limit = %d, want 1000", got)
	}
	if n := len(sw.Authorisations()); n != 5 {
		t.Errorf("%d authorisations recorded, want 5: %+v", n, sw.Authorisations())
	}
	for _, a := range sw.Authorisations() {
		if a.MaskedPAN == rich || a.MaskedPAN == bad {
			t.Errorf("the record holds a card number in clear")
		}
	}
}

// send MACs m, exchanges it and returns the response code and response.
func (c *client) send(m *iso8583.Message) (string, *iso8583.Message) {
	c.t.Helper()
	if err := m.Field(iso.FieldAcquirerID, "48020000"); err != nil {
		c.t.Fatal(err)
	}
	if err := iso.SetMAC(m, iso.MACX919, c.mak); err != nil {
		c.t.Fatal(err)
	}
	r := c.exchange(m)
	if err := iso.VerifyMAC(r, iso.MACX919, c.mak); err != nil {
		c.t.Errorf("response MAC: %v", err)
	}
	rc, _ := r.GetString(iso.FieldResponseCode)
	return rc, r
}

func (c *client) request(stan, pan, pin string) iso.Request {
	c.t.Helper()
	p, err := cardcrypto.ParsePAN(pan)
	if err != nil {
		c.t.Fatal(err)
	}
	card := iso.Card{PAN: p, Expiry: "3012", EntryMode: iso.EntryManualNoPIN}
	if pin != "" {
		pp, err := cardcrypto.ParsePIN(pin)
		if err != nil {
			c.t.Fatal(err)
		}
		card.PINBlock, err = cardcrypto.EncryptPINBlock(c.pik, pp, p)
		if err != nil {
			c.t.Fatal(err)
		}
		card.EntryMode, card.TripleDESPIN = "011", true
	}
	return iso.Request{Terminal: link, STAN: stan, Batch: "000001", At: time.Now(), Card: card, Amount: 1_000, Currency: "156"}
}

func TestPINsAndBalance(t *testing.T) {
	pan := luhn("622202333333333")
	sw := sim.New(sim.Options{MasterKey: tmk})
	sw.SetCard(pan, sim.Card{Limit: 50_000, PIN: "4321"})
	c := dial(t, sw)
	c.signOn()
	purchase := func(stan, pin string) string {
		m, err := iso.NewPurchase(c.request(stan, pan, pin))
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.send(m)
		return rc
	}
	for _, tc := range []struct{ stan, pin, want string }{
		{"000001", "4321", "00"}, {"000002", "", "55"}, {"000003", "1111", "55"}, {"000004", "4321", "00"},
		{"000005", "1111", "55"}, {"000006", "1111", "55"}, {"000007", "1111", "55"}, {"000008", "4321", "75"},
	} {
		if got := purchase(tc.stan, tc.pin); got != tc.want {
			t.Errorf("STAN %s with PIN %q: %s, want %s", tc.stan, tc.pin, got, tc.want)
		}
	}
	sw.ResetPINTries(pan)
	if got := purchase("000009", "4321"); got != "00" {
		t.Errorf("after the reset: %s", got)
	}
	// A block under another key does not decipher.
	r := c.request("000010", pan, "4321")
	r.Card.PINBlock = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	m, _ := iso.NewPurchase(r)
	if rc, _ := c.send(m); rc != "99" {
		t.Errorf("undecipherable block: %s", rc)
	}
	b, err := iso.NewBalanceInquiry(c.request("000011", pan, "4321"))
	if err != nil {
		t.Fatal(err)
	}
	rc, resp := c.send(b)
	f54, _ := resp.GetString(iso.FieldBalance)
	if bal, err := iso.ParseBalance(f54); rc != "00" || err != nil || bal.Amount != 50_000-3_000 {
		t.Errorf("balance: %s %q %v", rc, f54, err)
	}
}

func TestVoidIsAppliedOnce(t *testing.T) {
	pan := luhn("622202444444444")
	sw := sim.New(sim.Options{MasterKey: tmk})
	c := dial(t, sw)
	c.signOn()
	m, _ := iso.NewPurchase(c.request("000001", pan, ""))
	rc, resp := c.send(m)
	rrn, _ := resp.GetString(iso.FieldRRN)
	if rc != "00" {
		t.Fatalf("purchase: %s", rc)
	}
	r := c.request("000002", pan, "")
	r.Original = iso.Original{Batch: "000001", STAN: "000001", Date: time.Now().Format("0102"), RRN: rrn}
	void := func() string {
		m, err := iso.NewVoid(r)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.send(m)
		return rc
	}
	if rc := void(); rc != "00" {
		t.Fatalf("void: %s", rc)
	}
	if rc := void(); rc != "00" {
		t.Errorf("the same void again: %s, want its first answer", rc)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d", got)
	}
	r.STAN = "000003"
	if rc := void(); rc != "25" {
		t.Errorf("another void of the same purchase: %s, want 25", rc)
	}
	// Another request under a STAN already used is a duplicate.
	m, _ = iso.NewPurchase(c.request("000002", pan, ""))
	if rc, _ := c.send(m); rc != "94" {
		t.Errorf("a purchase under the void's STAN: %s, want 94", rc)
	}
	for _, a := range sw.Authorisations() {
		if a.Kind == sim.KindVoid && a.STAN == "000002" && a.Repeats != 1 {
			t.Errorf("void recorded %+v", a)
		}
	}
}
