package iso

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// withheld replaces a value by its length.
func withheld(in string, _ field.Field) string { return fmt.Sprintf("[%d withheld]", len(in)) }

// maskTrack keeps the masked card number of track data and hides the rest.
func maskTrack(in string, _ field.Field) string {
	if i := strings.IndexAny(in, "=D"); i >= 0 {
		return cardcrypto.MaskPAN(in[:i]) + "=[withheld]"
	}
	return withheld(in, nil)
}

func maskPAN(in string, _ field.Field) string { return cardcrypto.MaskPAN(in) }

// describeFilters mask every sensitive field: card number to its first 6
// and last 4 digits, track data, expiry, PIN block, chip data, batch upload
// entries and keys withheld.
func describeFilters() []iso8583.FieldFilter {
	return []iso8583.FieldFilter{
		iso8583.FilterField("2", maskPAN),
		iso8583.FilterField("14", withheld),
		iso8583.FilterField("35", maskTrack),
		iso8583.FilterField("36", maskTrack),
		iso8583.FilterField("45", withheld),
		iso8583.FilterField("48", withheld),
		iso8583.FilterField("52", withheld),
		iso8583.FilterField("55", withheld),
		iso8583.FilterField("62", withheld),
	}
}

// Describe writes a readable dump of a message for operators and tests,
// with every sensitive field masked. Use it, never fmt on the message.
func Describe(w io.Writer, m *iso8583.Message) error {
	env := EnvelopeOf(m)
	if _, err := fmt.Fprintf(w, "TPDU %s  header %s\n", env.TPDU, env.Header); err != nil {
		return err
	}
	return iso8583.Describe(m, w, describeFilters()...)
}

// LogValue summarises a message for slog: MTI, terminal, STAN, processing
// code, amount, response code and the masked card number.
func LogValue(m *iso8583.Message) slog.Value {
	mti, _ := m.GetMTI()
	attrs := []slog.Attr{slog.String("mti", mti)}
	present := m.GetFields() // a copy: taken once
	for _, f := range []struct {
		id   int
		name string
	}{{FieldTerminalID, "terminal"}, {FieldSTAN, "stan"}, {FieldProcessingCode, "proc"}, {FieldAmount, "amount"}, {FieldResponseCode, "rc"}} {
		if _, ok := present[f.id]; ok {
			v, _ := m.GetString(f.id)
			attrs = append(attrs, slog.String(f.name, v))
		}
	}
	if _, ok := present[FieldPAN]; ok {
		v, _ := m.GetString(FieldPAN)
		attrs = append(attrs, slog.String("pan", cardcrypto.MaskPAN(v)))
	} else if _, ok := present[FieldTrack2]; ok {
		v, _ := m.GetString(FieldTrack2)
		attrs = append(attrs, slog.String("pan", maskTrack(v, nil)))
	}
	return slog.GroupValue(attrs...)
}
