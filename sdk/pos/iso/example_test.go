package iso_test

import (
	"fmt"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// A terminal builds a purchase, MACs it and frames it; the host decodes the
// frame, checks the MAC and answers.
func ExampleNewPurchase() {
	mak, _ := cardcrypto.ParseKey("C24A8FB57AA20123")
	card, _ := cardcrypto.ParsePAN("6222021234567890128")
	term := iso.Terminal{Envelope: iso.DefaultEnvelope(0x0003, 0x0000), TerminalID: "10000001", MerchantID: "898310048140001"}

	req, err := iso.NewPurchase(iso.Request{
		Terminal: term, STAN: "000123", Batch: "000001",
		At:   time.Date(2026, 11, 26, 9, 30, 15, 0, time.UTC),
		Card: iso.Card{PAN: card, Expiry: "2812", EntryMode: iso.EntryManualNoPIN},
		// 123.45 yuan in fen
		Amount: 12_345, Currency: "156",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = iso.SetMAC(req, iso.MACECB, mak)
	frame, _ := iso.EncodeFrame(req)

	// host side
	got, _ := iso.DecodeFrame(frame)
	fmt.Println("MAC:", iso.ResponseCode(iso.VerifyMAC(got, iso.MACECB, mak)))
	resp, _ := iso.NewResponse(got, "00")
	mti, _ := resp.GetMTI()
	fmt.Println(mti, iso.EnvelopeOf(resp).TPDU, iso.LogValue(resp))
	// Output:
	// MAC: 00
	// 0210 6000000003 [mti=0210 terminal=10000001 stan=000123 proc=000000 amount=000000012345 rc=00 pan=622202*********0128]
}
