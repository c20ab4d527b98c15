package reads

import (
	"testing"
	"time"
)

func TestPlaceholders(t *testing.T) {
	for _, tc := range []struct {
		d       Dialect
		in, out string
	}{
		{SQLite, `SELECT a FROM t WHERE b = ? AND c > ?`, `SELECT a FROM t WHERE b = ? AND c > ?`},
		{PostgreSQL, `SELECT a FROM t WHERE b = ? AND c > ?`, `SELECT a FROM t WHERE b = $1 AND c > $2`},
		{PostgreSQL, `SELECT a FROM t`, `SELECT a FROM t`},
	} {
		r := New(nil, tc.d)
		for range 2 { // the second time from the cache
			if got := r.sql(tc.in); got != tc.out {
				t.Errorf("%s: sql(%q) = %q, want %q", tc.d.Name, tc.in, got, tc.out)
			}
		}
	}
}

func TestUniqueKeys(t *testing.T) {
	ks := pairKeys("device", "text", []string{"a", "b", "a", "a"}, "seq", "bigint", []int64{1, 1, 1, 2}).unique()
	if ks.n != 3 {
		t.Fatalf("unique kept %d keys, want 3", ks.n)
	}
	devs, seqs := ks.vals[0].([]string), ks.vals[1].([]int64)
	for i, want := range []struct {
		d string
		s int64
	}{{"a", 1}, {"b", 1}, {"a", 2}} {
		if devs[i] != want.d || seqs[i] != want.s {
			t.Errorf("key %d = %s/%d, want %s/%d", i, devs[i], seqs[i], want.d, want.s)
		}
	}
}

func TestTimeScan(t *testing.T) {
	want := time.Date(2026, 12, 7, 21, 49, 22, 123456000, time.UTC)
	for _, v := range []any{want.In(time.FixedZone("CST", 8*3600)), want.UnixMicro()} {
		var got time.Time
		if err := Time(&got).Scan(v); err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("Time.Scan(%v) = %v, %v; want %v in UTC", v, got, err, want)
		}
	}
	if err := Time(new(time.Time)).Scan("yesterday"); err == nil {
		t.Error("Time.Scan of a string: no error")
	}
}
