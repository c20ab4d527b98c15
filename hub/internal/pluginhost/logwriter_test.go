package pluginhost

import (
	"log/slog"
	"testing"
)

func TestLineLogger(t *testing.T) {
	sink := &logSink{}
	w := newLineLogger(slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), "bus")
	// Lines arrive split anywhere, several per write, some as hclog JSON.
	for _, chunk := range []string{"first ha", "lf\nsecond\n\n", `{"@level":"warn","@message":"from hclog","x":1}` + "\n", "no newline"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	tests := []struct{ msg, level string }{
		{"first half", "INFO"},
		{"second", "INFO"},
		{"from hclog", "WARN"},
		{"no newline", "INFO"},
	}
	for _, tt := range tests {
		rs := sink.records("bus", tt.msg)
		if len(rs) != 1 || rs[0]["msg"] != tt.msg || rs[0]["level"] != tt.level {
			t.Errorf("records for %q = %v, want one at %s", tt.msg, rs, tt.level)
		}
	}
	if n := len(sink.records("bus", "")); n != len(tests) {
		t.Errorf("%d records, want %d (blank lines dropped)", n, len(tests))
	}
}
