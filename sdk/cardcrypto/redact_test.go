package cardcrypto

import (
	"strings"
	"testing"
)

func TestRedactJSON(t *testing.T) {
	const bank, city = "6222020000000000018", "3100990000000013"
	doc := `{"type":"card.payment.v1","payload":{"card":"` + bank + `","pin_block":"0123456789ABCDEF","amount":100,
		"cards":["` + city + `","` + bank + `"],"nested":{"PIN":"123456","note":"pay 6222020000000000026"}},"n":12.50}`
	got := string(RedactJSON([]byte(doc), func(n string) bool { return strings.HasPrefix(n, "310099") }))
	for _, secret := range []string{bank, "0123456789ABCDEF", "123456\"", "6222020000000000026"} {
		if strings.Contains(got, secret) {
			t.Errorf("redacted document still holds %q: %s", secret, got)
		}
	}
	for _, want := range []string{MaskPAN(bank), city, `"amount":100`, `"n":12.50`, "pay 622202*********0026"} {
		if !strings.Contains(got, want) {
			t.Errorf("redacted document lost %q: %s", want, got)
		}
	}
	// A payload carried as a JSON string is redacted too.
	inner := `{"payload":"{\"card\":\"` + bank + `\"}"}`
	if got := string(RedactJSON([]byte(inner), nil)); strings.Contains(got, bank) {
		t.Errorf("string-carried payload kept the card number: %s", got)
	}
	if got := string(RedactJSON([]byte("not json "+bank), nil)); strings.Contains(got, bank) || len(got) != len("not json "+bank) {
		t.Errorf("a document that is not JSON: %q", got)
	}
}
