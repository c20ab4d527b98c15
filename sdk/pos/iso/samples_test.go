package iso

import (
	"testing"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
)

// sampleMessages builds one MACed message of each type, and some
// responses, for the fuzz corpus.
func sampleMessages(t testing.TB) (map[string]*iso8583.Message, error) {
	p := pan(t, testCardPAN)
	pik := key(t, testMAK16)
	pin, _ := cardcrypto.ParsePIN("123456")
	block, err := cardcrypto.EncryptPINBlock(pik, pin, p)
	if err != nil {
		return nil, err
	}
	card := Card{PAN: p, Expiry: "2812", Track2: testCardPAN + "=2812101123", EntryMode: EntrySwipePIN, PINBlock: block, TripleDESPIN: true,
		ICC: []byte{0x9F, 0x26, 0x02, 0xAB, 0xCD}}
	r := Request{Terminal: testTerminal, STAN: "000123", Batch: "000001", At: testTime, Card: card, Amount: 12_345, Currency: "156",
		Original: Original{Batch: "000001", STAN: "000120", Date: "1126", RRN: "112609301512", AuthCode: "A1B2C3"}}
	out := map[string]*iso8583.Message{}
	add := func(name string, m *iso8583.Message, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := SetMAC(m, MACECB, key(t, testMAK)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = m
	}
	purchase, err := NewPurchase(r)
	add("0200-purchase", purchase, err)
	m, err := NewVoid(r)
	add("0200-void", m, err)
	m, err = NewRefund(r)
	add("0220-refund", m, err)
	m, err = NewBalanceInquiry(r)
	add("0200-balance", m, err)
	m, err = NewPreAuth(r)
	add("0100-preauth", m, err)
	m, err = NewCompletion(r)
	add("0200-completion", m, err)
	m, err = NewReversal(purchase, ReverseTimeout)
	add("0400-reversal", m, err)
	m, err = NewSignOn(testTerminal, "000001", "000000", testTime, KeysWithData, "01 ")
	add("0800-signon", m, err)
	keys, err := cardcrypto.BuildSignOnKeys(key(t, "70F2A84CCBC2AE8625CBB0F2C22AB923"),
		cardcrypto.WorkingKeys{PIN: pik, MAC: key(t, testMAK), Data: key(t, testMAK16)})
	if err != nil {
		return nil, err
	}
	m, err = NewSignOnResponse(m, "00", "000002", testTime, keys)
	add("0810-signon", m, err)
	m, err = NewSettlement(testTerminal, "000130", "000001", testTime, Totals{Domestic: Tally{DebitAmount: 12_345, DebitCount: 1}}, "01 ")
	add("0500-settlement", m, err)
	m, err = NewBatchUpload(testTerminal, "000131", "000001", []BatchEntry{{CardOrg: "00", STAN: "000123", PAN: testCardPAN, Amount: 12_345}}, true)
	add("0320-batchupload", m, err)
	m, err = NewResponse(purchase, "51")
	if err == nil {
		err = m.Field(FieldBalance, "1001156C000000012345")
	}
	add("0210-declined", m, err)
	m = NewMessage("0200", testTerminal.Envelope)
	for id, v := range map[int]string{3: "000000", 11: "000777", 41: "10000001", 100: "12345678"} {
		_ = m.Field(id, v)
	}
	add("0200-secondary-bitmap", m, nil)
	return out, nil
}
