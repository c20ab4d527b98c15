package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestTopic(t *testing.T) {
	tests := []struct {
		name, plugin, msgType, want string
	}{
		{"simple", "transit", "tap", "plugin.transit.tap"},
		{"dotted type", "transit", "tap.batch", "plugin.transit.tap.batch"},
		{"dash and underscore", "union-pay_2", "auth_reversal", "plugin.union-pay_2.auth_reversal"},
		{"upper case name", "Transit", "tap", ""},
		{"dot in name", "trans.it", "tap", ""},
		{"empty name", "", "tap", ""},
		{"empty type", "transit", "", ""},
		{"empty type segment", "transit", "tap..batch", ""},
		{"trailing dot", "transit", "tap.", ""},
		{"leading dash", "-transit", "tap", ""},
		{"space", "transit", "tap batch", ""},
		{"wildcard", "transit", "*", ""},
		{"NATS wildcard", "transit", ">", ""},
		{"too long name", strings.Repeat("a", 65), "tap", ""},
		{"longest name", strings.Repeat("a", 64), "tap", "plugin." + strings.Repeat("a", 64) + ".tap"},
		{"too long type", "transit", strings.Repeat("a", 129), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Topic(tt.plugin, tt.msgType)
			if got != tt.want {
				t.Fatalf("Topic(%q, %q) = %q, want %q", tt.plugin, tt.msgType, got, tt.want)
			}
			err := ValidateTopic(got)
			if (err == nil) != (tt.want != "") {
				t.Fatalf("ValidateTopic(%q) = %v", got, err)
			}
			if err != nil && !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("ValidateTopic error %v does not wrap ErrInvalidTopic", err)
			}
		})
	}
}

func TestServiceTopic(t *testing.T) {
	if got := ServiceTopic("ledger", "posted"); got != "hub.ledger.posted" {
		t.Fatalf("ServiceTopic = %q", got)
	}
	if got := ServiceTopic("Ledger", "posted"); got != "" {
		t.Fatalf("ServiceTopic with an invalid name = %q, want \"\"", got)
	}
}

func TestValidateTopic(t *testing.T) {
	for _, ok := range []string{"plugin.transit.tap", "hub.ledger.posted", "hub.x.a.b.c"} {
		if err := ValidateTopic(ok); err != nil {
			t.Errorf("ValidateTopic(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", TopicDeadLetters, "plugin", "plugin.transit", "other.transit.tap",
		"plugin..tap", "plugin.transit.", "plugin.Transit.tap", "hub.ledger.posted.", "plugin.transit.tap*"} {
		if err := ValidateTopic(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
}

func TestPGTableNames(t *testing.T) {
	short := "plugin.transit.tap"
	if got := pgTable("watermill_offsets_", short); got != `"watermill_offsets_plugin.transit.tap"` {
		t.Fatalf("pgTable = %s", got)
	}
	// Two long topics that share their first 63 bytes get distinct names
	// that PostgreSQL will not cut.
	long1 := "plugin.unionpay." + strings.Repeat("x", 60) + ".one"
	long2 := "plugin.unionpay." + strings.Repeat("x", 60) + ".two"
	a, b := pgTable("watermill_offsets_", long1), pgTable("watermill_offsets_", long2)
	if a == b {
		t.Fatalf("long topics share table %s", a)
	}
	for _, n := range []string{a, b} {
		if len(n)-2 > 63 {
			t.Fatalf("table name %s is %d bytes, over PostgreSQL's 63", n, len(n)-2)
		}
	}
}
