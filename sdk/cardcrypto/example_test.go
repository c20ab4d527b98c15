package cardcrypto_test

import (
	"encoding/hex"
	"fmt"

	"github.com/citycard/citycard/sdk/cardcrypto"
)

// A card number prints masked however it is formatted.
func ExamplePAN() {
	pan, err := cardcrypto.ParsePAN("6222021234567890128")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pan)
	fmt.Printf("%v %s %+v\n", pan, pan, struct{ Card cardcrypto.PAN }{pan})
	// Output:
	// 622202*********0128
	// 622202*********0128 622202*********0128 {Card:622202*********0128}
}

// The host unwraps the working keys of a sign-on response under the
// terminal master key, checking their check values.
func ExampleParseSignOnKeys() {
	tmk, _ := cardcrypto.ParseKey("70F2A84CCBC2AE8625CBB0F2C22AB923")
	pik, _ := cardcrypto.ParseKey("0123456789ABCDEFFEDCBA9876543210")
	mak, _ := cardcrypto.ParseKey("C24A8FB57AA20123")
	field62, _ := cardcrypto.BuildSignOnKeys(tmk, cardcrypto.WorkingKeys{PIN: pik, MAC: mak})

	keys, err := cardcrypto.ParseSignOnKeys(tmk, field62)
	fmt.Println(len(field62), err)
	fmt.Println(keys.PIN) // formats as its check value, never the key
	kcv, _ := cardcrypto.KCV(keys.MAC)
	fmt.Println(hex.EncodeToString(kcv) != "")
	// Output:
	// 40 <nil>
	// Key(16 bytes, KCV 08D7B4)
	// true
}
