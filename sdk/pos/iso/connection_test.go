package iso

import (
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	"github.com/moov-io/iso8583-connection/server"
)

// A terminal and a host talk over real TCP through iso8583-connection with
// Codec framing, RequestIDs matching and MACs on every message.
func TestOverConnection(t *testing.T) {
	mak := key(t, testMAK)
	var (
		mu      sync.Mutex
		macFail int
	)
	host := func(c *connection.Connection, req *iso8583.Message) {
		rc := ResponseApproved
		if err := VerifyMAC(req, MACECB, mak); err != nil {
			mu.Lock()
			macFail++
			mu.Unlock()
			rc = ResponseCode(err)
		}
		resp, err := NewResponse(req, rc)
		if err != nil {
			t.Errorf("host: %v", err)
			return
		}
		_ = resp.Field(FieldRRN, "112609301500")
		if err := SetMAC(resp, MACECB, mak); err != nil {
			t.Errorf("host: %v", err)
			return
		}
		if err := c.Reply(resp); err != nil {
			t.Errorf("host reply: %v", err)
		}
	}
	opts := []connection.Option{
		connection.SetMessageReader(Codec{}),
		connection.SetMessageWriter(Codec{}),
		connection.SetRequestIDGenerator(RequestIDs{}),
	}
	srv := server.New(Spec, ReadLength, WriteLength, append(opts, connection.InboundMessageHandler(host))...)
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	client, err := connection.New(srv.Addr, Spec, ReadLength, WriteLength, append(opts, connection.SendTimeout(5*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Connect(); err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	p := pan(t, testCardPAN)
	send := func(stan string, amount int64, k cardcrypto.Key) *iso8583.Message {
		t.Helper()
		req, err := NewPurchase(Request{Terminal: testTerminal, STAN: stan, Batch: "000001", At: testTime,
			Card: Card{PAN: p, EntryMode: EntryManualNoPIN}, Amount: amount, Currency: "156"})
		if err != nil {
			t.Fatal(err)
		}
		if err := SetMAC(req, MACECB, k); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Send(req)
		if err != nil {
			t.Fatalf("send %s: %v", stan, err)
		}
		if str(t, resp, FieldSTAN) != stan || str(t, resp, FieldAmount) != str(t, req, FieldAmount) {
			t.Fatalf("response to %s matched the wrong request", stan)
		}
		if EnvelopeOf(resp).TPDU != testTerminal.Envelope.TPDU.Reply() {
			t.Fatalf("response TPDU %v", EnvelopeOf(resp).TPDU)
		}
		if err := VerifyMAC(resp, MACECB, mak); err != nil {
			t.Fatalf("response MAC: %v", err)
		}
		return resp
	}

	// Concurrent requests are matched by terminal id and STAN.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stan := []string{"000201", "000202", "000203", "000204", "000205", "000206", "000207", "000208"}[i]
			if rc := str(t, send(stan, int64(100+i), mak), FieldResponseCode); rc != "00" {
				t.Errorf("%s: rc %s", stan, rc)
			}
		}()
	}
	wg.Wait()

	// A request MACed under the wrong key is answered A0.
	if rc := str(t, send("000300", 1, key(t, "1111111111111111")), FieldResponseCode); rc != ResponseMACError {
		t.Fatalf("wrong MAC answered %s", rc)
	}
	mu.Lock()
	defer mu.Unlock()
	if macFail != 1 {
		t.Fatalf("host saw %d MAC failures", macFail)
	}
}
