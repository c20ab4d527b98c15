package iso

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
)

// A frame produced by a real POS host decodes, re-encodes byte for byte and
// carries a MAC that verifies.
func TestPublishedFrame(t *testing.T) {
	frame := unhex(t, publishedFrame)
	m, err := DecodeFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	env := EnvelopeOf(m)
	if env.TPDU.String() != "6000030000" || env.Header.String() != "603210320072" || env.Header.TerminalStatus != 1 {
		t.Fatalf("envelope %v", env)
	}
	want := map[int]string{0: "0200", 3: "000000", 4: "000000001234", 11: "000002", 22: "030", 25: "99",
		41: "00000001", 42: "952718182217875", 49: "156", 60: "2600000100060000000"}
	for id, v := range want {
		if got := str(t, m, id); got != v {
			t.Errorf("field %d = %q, want %q", id, got, v)
		}
	}
	mac, _ := m.GetBytes(FieldMAC)
	if string(mac) != "B3A092AE" {
		t.Fatalf("MAC field %q", mac)
	}
	again, err := EncodeFrame(m)
	if err != nil || !bytes.Equal(again, frame) {
		t.Fatalf("re-encoded frame differs: %v", err)
	}
	if err := VerifyMAC(m, MACECB, key(t, publishedTAK)); err != nil {
		t.Fatalf("published MAC does not verify: %v", err)
	}
	// One changed amount digit and the MAC fails with A0.
	tampered := append([]byte{}, frame...)
	tampered[2+EnvelopeSize+2+8+3+5] ^= 0x01
	m2, err := DecodeFrame(tampered)
	if err != nil {
		t.Fatal(err)
	}
	err = VerifyMAC(m2, MACECB, key(t, publishedTAK))
	if !errors.Is(err, ErrMACMismatch) || ResponseCode(err) != "A0" {
		t.Fatalf("tampered frame: %v (%s)", err, ResponseCode(err))
	}
	var me *MACError
	if !errors.As(err, &me) || me.MTI != "0200" {
		t.Fatalf("MACError: %v", err)
	}
}

func TestEnvelope(t *testing.T) {
	env := DefaultEnvelope(0x0003, 0x0001)
	if env.TPDU.String() != "6000030001" || env.Header.String() != "603100000000" {
		t.Fatalf("default envelope %v", env)
	}
	r := env.Reply()
	if r.TPDU.Destination != 1 || r.TPDU.Source != 3 || r.Header != env.Header {
		t.Fatalf("reply %v", r)
	}
	h := Header{AppType: 0x60, Version: 0x22, TerminalStatus: 1, ProcessingRequirement: ProcessSignOnAgain, Reserved: [3]byte{1, 2, 3}}
	got, err := DecodeHeader(h.Encode())
	if err != nil || got != h {
		t.Fatalf("header round trip %v %v", got, err)
	}
	for name, tc := range map[string]struct {
		b    string
		kind error
	}{
		"short":          {"6000030000603100", ErrTruncated},
		"TPDU ID":        {"7000030000603100000000", ErrTPDU},
		"header not BCD": {"60000300006A3100000000", ErrHeader},
	} {
		if _, err := DecodeEnvelope(unhex(t, tc.b)); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Round trip of every message type the POS flows use, with their
// responses, under both MAC algorithms.
func TestRoundTrips(t *testing.T) {
	p := pan(t, testCardPAN)
	pik := key(t, testMAK16)
	pin, _ := cardcrypto.ParsePIN("123456")
	block, err := cardcrypto.EncryptPINBlock(pik, pin, p)
	if err != nil {
		t.Fatal(err)
	}
	swipe := Card{Track2: testCardPAN + "=28121011234567", EntryMode: EntrySwipePIN, PINBlock: block, TripleDESPIN: true}
	chip := Card{PAN: p, Expiry: "2812", EntryMode: EntryChipPIN, CardSequence: "001", PINBlock: block, TripleDESPIN: true,
		ICC: unhex(t, "9F2608C2A1B3D4E5F60718 9F2701 80 9F3602 0001")}
	req := func(card Card, amount int64) Request {
		return Request{Terminal: testTerminal, STAN: "000123", Batch: "000001", At: testTime, Card: card, Amount: amount, Currency: "156"}
	}
	orig := Original{Batch: "000001", STAN: "000120", Date: "1126", RRN: "112609301512", AuthCode: "A1B2C3"}
	withOrig := func(r Request) Request { r.Original = orig; return r }
	tmk := key(t, "70F2A84CCBC2AE8625CBB0F2C22AB923")
	keys, err := cardcrypto.BuildSignOnKeys(tmk, cardcrypto.WorkingKeys{PIN: pik, MAC: key(t, testMAK)})
	if err != nil {
		t.Fatal(err)
	}
	purchase, err := NewPurchase(req(swipe, 12_345))
	if err != nil {
		t.Fatal(err)
	}

	type build func() (*iso8583.Message, error)
	cases := []struct {
		name    string
		build   build
		mti     string
		fields  map[int]string
		respMTI string
	}{
		{"sign-on", func() (*iso8583.Message, error) {
			return NewSignOn(testTerminal, "000001", "000000", testTime, KeysDouble, "01 ")
		}, "0800", map[int]string{11: "000001", 41: "10000001", 60: "00000000003", 63: "01 "}, "0810"},
		{"purchase (swipe, PIN)", func() (*iso8583.Message, error) { return purchase, nil },
			"0200", map[int]string{3: "000000", 4: "000000012345", 22: "021", 25: "00", 26: "12", 35: testCardPAN + "=28121011234567", 49: "156", 53: "1600000000000000", 60: "22000001"}, "0210"},
		{"purchase (chip)", func() (*iso8583.Message, error) { return NewPurchase(req(chip, 99)) },
			"0200", map[int]string{2: testCardPAN, 14: "2812", 22: "051", 23: "001", 4: "000000000099"}, "0210"},
		{"void", func() (*iso8583.Message, error) { return NewVoid(withOrig(req(swipe, 12_345))) },
			"0200", map[int]string{3: "200000", 37: "112609301512", 60: "23000001", 61: "0000010001201126"}, "0210"},
		{"refund", func() (*iso8583.Message, error) { return NewRefund(withOrig(req(chip, 5_000))) },
			"0220", map[int]string{3: "200000", 60: "25000001", 61: "0000010001201126"}, "0230"},
		{"balance inquiry", func() (*iso8583.Message, error) {
			r := req(swipe, 0)
			r.Amount = 0
			return NewBalanceInquiry(r)
		}, "0200", map[int]string{3: "310000", 60: "01000001"}, "0210"},
		{"pre-authorisation", func() (*iso8583.Message, error) { return NewPreAuth(req(chip, 50_000)) },
			"0100", map[int]string{3: "030000", 25: "06", 60: "10000001"}, "0110"},
		{"completion", func() (*iso8583.Message, error) { return NewCompletion(withOrig(req(chip, 48_000))) },
			"0200", map[int]string{3: "000000", 25: "06", 38: "A1B2C3", 60: "20000001", 61: "0000010001201126"}, "0210"},
		{"reversal", func() (*iso8583.Message, error) { return NewReversal(purchase, ReverseTimeout) },
			"0400", map[int]string{3: "000000", 4: "000000012345", 11: "000123", 39: "98", 60: "22000001"}, "0410"},
		{"settlement", func() (*iso8583.Message, error) {
			return NewSettlement(testTerminal, "000130", "000001", testTime, Totals{Domestic: Tally{DebitAmount: 112_345, DebitCount: 3, CreditAmount: 5_000, CreditCount: 1}}, "01 ")
		}, "0500", map[int]string{48: "000000112345003000000005000001" + "0" + strings.Repeat("0", 30) + "0", 60: "00000001201"}, "0510"},
		{"batch upload", func() (*iso8583.Message, error) {
			return NewBatchUpload(testTerminal, "000131", "000001", []BatchEntry{{CardOrg: "00", STAN: "000123", PAN: testCardPAN, Amount: 12_345}}, true)
		}, "0320", map[int]string{60: "00000001202"}, "0330"},
	}
	for i, tc := range cases {
		alg, mak := MACECB, key(t, testMAK)
		if i%2 == 1 {
			alg, mak = MACX919, key(t, testMAK16)
		}
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			if err := SetMAC(m, alg, mak); err != nil {
				t.Fatal(err)
			}
			frame, err := EncodeFrame(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
			if mti, _ := got.GetMTI(); mti != tc.mti {
				t.Fatalf("MTI %s", mti)
			}
			for id, v := range tc.fields {
				if s := str(t, got, id); s != v {
					t.Errorf("field %d = %q, want %q", id, s, v)
				}
			}
			if EnvelopeOf(got) != testTerminal.Envelope {
				t.Errorf("envelope %v", EnvelopeOf(got))
			}
			if err := VerifyMAC(got, alg, mak); err != nil {
				t.Fatalf("MAC: %v", err)
			}
			if tc.mti == "0400" {
				for _, id := range []int{FieldTrack2, FieldPINBlock, FieldSecurityControl} {
					if isSet(got, id) {
						t.Errorf("reversal carries field %d", id)
					}
				}
			}

			// The host's answer.
			resp, err := NewResponse(got, "00")
			if err != nil {
				t.Fatal(err)
			}
			if tc.mti == "0800" {
				if resp, err = NewSignOnResponse(got, "00", "000002", testTime, keys); err != nil {
					t.Fatal(err)
				}
			}
			_ = resp.Field(FieldRRN, "112609301599")
			if err := SetMAC(resp, alg, mak); err != nil {
				t.Fatal(err)
			}
			rframe, err := EncodeFrame(resp)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeFrame(rframe)
			if err != nil {
				t.Fatal(err)
			}
			if mti, _ := back.GetMTI(); mti != tc.respMTI {
				t.Fatalf("response MTI %s", mti)
			}
			if EnvelopeOf(back).TPDU != testTerminal.Envelope.TPDU.Reply() {
				t.Errorf("response TPDU %v", EnvelopeOf(back).TPDU)
			}
			if str(t, back, 39) != "00" || str(t, back, 11) != str(t, got, 11) || str(t, back, 41) != "10000001" {
				t.Errorf("response fields 39/11/41: %q %q %q", str(t, back, 39), str(t, back, 11), str(t, back, 41))
			}
			if err := VerifyMAC(back, alg, mak); err != nil {
				t.Fatalf("response MAC: %v", err)
			}
			if tc.mti == "0800" {
				f62, _ := back.GetBytes(FieldReserved62)
				wk, err := cardcrypto.ParseSignOnKeys(tmk, f62)
				if err != nil || !wk.MAC.Equal(key(t, testMAK)) {
					t.Fatalf("sign-on keys: %v", err)
				}
				if f60, _ := ParseField60(str(t, back, 60)); f60.Batch != "000002" || f60.NetworkCode != NetSignOnDouble {
					t.Errorf("sign-on response field 60 %+v", f60)
				}
			}
			if tc.mti == "0320" {
				entries, err := ParseBatch(str(t, back, 48))
				if err != nil || len(entries) != 1 || entries[0].PAN != testCardPAN || entries[0].Amount != 12_345 {
					t.Errorf("batch entries %+v %v", entries, err)
				}
			}
			if tc.mti == "0500" {
				tot, err := ParseTotals(str(t, back, 48))
				if err != nil || tot.Domestic.DebitAmount != 112_345 || tot.Domestic.CreditCount != 1 {
					t.Errorf("totals %+v %v", tot, err)
				}
			}
		})
	}
}

func TestSecondaryBitmap(t *testing.T) {
	m := NewMessage("0200", testTerminal.Envelope)
	for id, v := range map[int]string{3: "000000", 11: "000777", 41: "10000001", 100: "12345678"} {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	mak := key(t, testMAK16)
	if err := SetMAC(m, MACX919, mak); err != nil {
		t.Fatal(err)
	}
	if isSet(m, FieldMAC) || !isSet(m, FieldMAC2) {
		t.Fatal("with a secondary bitmap the MAC goes in field 128")
	}
	frame, err := EncodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	if frame[2+EnvelopeSize+2]&0x80 == 0 {
		t.Fatal("secondary bitmap bit not set")
	}
	got, err := DecodeFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	if str(t, got, 100) != "12345678" {
		t.Fatal("field 100")
	}
	if err := VerifyMAC(got, MACX919, mak); err != nil {
		t.Fatal(err)
	}
}

func TestBuilderErrors(t *testing.T) {
	p := pan(t, testCardPAN)
	good := Request{Terminal: testTerminal, STAN: "000123", Batch: "000001", At: testTime,
		Card: Card{PAN: p, EntryMode: EntryManualNoPIN}, Amount: 100, Currency: "156"}
	for name, mut := range map[string]func(r *Request){
		"negative amount":  func(r *Request) { r.Amount = -1 },
		"amount too large": func(r *Request) { r.Amount = 1_000_000_000_000 },
		"short STAN":       func(r *Request) { r.STAN = "123" },
		"bad batch":        func(r *Request) { r.Batch = "00000A" },
		"no card":          func(r *Request) { r.Card = Card{EntryMode: EntryManualNoPIN} },
		"no entry mode":    func(r *Request) { r.Card.EntryMode = "" },
		"terminal id":      func(r *Request) { r.TerminalID = "123" },
		"merchant id":      func(r *Request) { r.MerchantID = "123" },
		"currency":         func(r *Request) { r.Currency = "CNY" },
		"PIN block":        func(r *Request) { r.Card.PINBlock = []byte{1, 2, 3} },
		"track data":       func(r *Request) { r.Card.Track2 = "6222=28A1" },
	} {
		r := good
		mut(&r)
		if _, err := NewPurchase(r); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := NewPurchase(good); err != nil {
		t.Fatalf("good request: %v", err)
	}
	if _, err := NewVoid(good); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("void without original: %v", err)
	}
	sign, _ := NewSignOn(testTerminal, "000001", "000000", testTime, KeysSingle, "01 ")
	if _, err := NewReversal(sign, ReverseTimeout); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("reversal of a sign-on: %v", err)
	}
	if _, err := NewBatchUpload(testTerminal, "000001", "000001", nil, true); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("empty batch upload: %v", err)
	}
	if _, err := NewSignOn(testTerminal, "000001", "000000", testTime, KeysSingle, "0001"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("long operator: %v", err)
	}
	if _, err := ResponseMTI("0210"); err == nil {
		t.Error("response MTI of a response")
	}
	if _, err := NewResponse(sign, "000"); err == nil {
		t.Error("3-character response code")
	}
}

func TestPrivateFields(t *testing.T) {
	f, err := ParseField60("22000001003")
	if err != nil || f.MessageType != "22" || f.Batch != "000001" || f.NetworkCode != "003" {
		t.Fatalf("%+v %v", f, err)
	}
	for _, bad := range []string{"2200", "220000010", "22000001ab1"} {
		if _, err := ParseField60(bad); err == nil {
			t.Errorf("ParseField60(%q) accepted", bad)
		}
	}
	if _, err := (Field60{MessageType: "22", Batch: "1"}).Encode(); err == nil {
		t.Error("short batch accepted")
	}
	o, err := ParseOriginal("0000010001201126")
	if err != nil || o.STAN != "000120" || o.Date != "1126" {
		t.Fatalf("%+v %v", o, err)
	}
	if _, err := ParseOriginal("00000100012"); err == nil {
		t.Error("short field 61 accepted")
	}
	entries := make([]BatchEntry, MaxBatchEntries)
	for i := range entries {
		entries[i] = BatchEntry{CardOrg: "00", STAN: fmt.Sprintf("%06d", i+1), PAN: testCardPAN[:12+i], Amount: int64(i * 100)}
	}
	f48, err := EncodeBatch(entries)
	if err != nil || len(f48) > 322 {
		t.Fatalf("batch of %d: %d digits, %v", len(entries), len(f48), err)
	}
	back, err := ParseBatch(f48)
	if err != nil || len(back) != len(entries) || back[6] != entries[6] {
		t.Fatalf("batch round trip: %v", err)
	}
	if _, err := EncodeBatch(append(entries, entries[0])); err == nil {
		t.Error("8 entries accepted")
	}
	if _, err := ParseBatch(f48[:len(f48)-1]); err == nil {
		t.Error("short batch field accepted")
	}
	if _, err := ParseTotals("123"); err == nil {
		t.Error("short totals accepted")
	}
	if _, err := (Totals{Domestic: Tally{DebitCount: 1000}}).Field48(); err == nil {
		t.Error("count 1000 accepted")
	}
}

func TestBalance(t *testing.T) {
	for _, b := range []Balance{
		{AccountType: "10", AmountType: "02", Currency: "156", Amount: 12_345},
		{AccountType: "10", AmountType: "01", Currency: "156", Amount: -500},
	} {
		s, err := b.Field54()
		if err != nil || len(s) != 20 {
			t.Fatalf("%q %v", s, err)
		}
		back, err := ParseBalance(s)
		if err != nil || back != b {
			t.Fatalf("round trip %+v %v", back, err)
		}
	}
	for _, bad := range []string{"", "1002156X000000012345", "1002156C00000001234a"} {
		if _, err := ParseBalance(bad); err == nil {
			t.Errorf("ParseBalance(%q) accepted", bad)
		}
	}
	if _, err := (Balance{AccountType: "1", AmountType: "02", Currency: "156"}).Field54(); err == nil {
		t.Error("short account type accepted")
	}
}
