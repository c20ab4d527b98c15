package main

import (
	"strings"
	"testing"
)

func TestDescribeStore(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"sqlite://./citycard-data/citycard.db", "sqlite ./citycard-data/citycard.db"},
		{"sqlite:///var/lib/citycard/citycard.db", "sqlite /var/lib/citycard/citycard.db"},
		{"sqlite:cc.db", "sqlite cc.db"},
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres postgres@127.0.0.1:5432/test?sslmode=disable"},
		{"postgres://alice:s3cret@db.example:5432/citycard", "postgres alice@db.example:5432/citycard"},
		{"postgresql://db.example/citycard?password=s3cret&sslmode=require", "postgresql db.example/citycard?sslmode=require"},
		{"host=db.example password=s3cret", "(a DSN that is not a URL)"},
		{"postgres://alice:s3cret@db example/x", "(a DSN that is not a URL)"},
	} {
		got := describeStore(c.dsn)
		if got != c.want {
			t.Errorf("describeStore(%q) = %q, want %q", c.dsn, got, c.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("describeStore(%q) shows the password: %q", c.dsn, got)
		}
	}
}
