package iso

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Neither the dump nor the log summary shows card data or keys.
func TestDescribeMasks(t *testing.T) {
	ms, err := sampleMessages(t)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range ms {
		var out, logs bytes.Buffer
		if err := Describe(&out, m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		slog.New(slog.NewTextHandler(&logs, nil)).Info("msg", "m", LogValue(m))
		for _, s := range []string{out.String(), logs.String()} {
			for _, secret := range []string{testCardPAN, "2812101123", "1234567890"} {
				if strings.Contains(s, secret) {
					t.Errorf("%s: %q in output:\n%s", name, secret, s)
				}
			}
		}
		if !strings.Contains(out.String(), "TPDU 60000") {
			t.Errorf("%s: envelope missing:\n%s", name, out.String())
		}
		if (name == "0200-purchase" || name == "0210-declined") && !strings.Contains(logs.String(), "622202*********0128") {
			t.Errorf("%s: masked card number missing: %s", name, logs.String())
		}
	}
}
