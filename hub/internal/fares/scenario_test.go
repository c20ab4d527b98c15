package fares

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScenarios runs every script in testdata/scenarios. A script is a fare
// officer's account of one card's day: directives, then taps, each with what
// it must charge and why. The grammar:
//
//	# a comment; blank lines are ignored
//	table odd                      fare tables from testdata/tables/odd (before any tap; default: channels/transit)
//	category student               the card product's concession
//	date 2026-11-23                the local date of the taps that follow
//	08:00 on city-bus 1 => charge 200: fare 200
//	08:40 on metro metro M01 => charge 400 transfer: max_fare 500, transfer -100
//	09:10 off metro metro M05 => refund 100: refund -100
//	09:20 on city-bus 99 => error unknown route
//	check day_spent=300 week_spent=300 transfers=1 open=none
//
// A tap is a local time (HH:MM or HH:MM:SS), on or off, operator, route and
// stop (flat-fare routes need none). After => comes charge or refund and the
// amount, the flags transfer and late when the quote carries them, and after
// a colon every line of the quote in order. check compares the state.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

func runScenario(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var (
		tb     *Table
		st     RiderState
		date   string
		tapped bool
	)
	table := func() *Table {
		if tb == nil {
			tb = mustDefault(t)
		}
		return tb
	}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := fmt.Sprintf("%s:%d", filepath.Base(file), n)
		fields := strings.Fields(line)
		switch fields[0] {
		case "table":
			if tapped || tb != nil || len(fields) != 2 {
				t.Fatalf("%s: table takes one name and comes before any tap", at)
			}
			tb, err = LoadFS(os.DirFS(filepath.Join("testdata", "tables", fields[1])))
			if err != nil {
				t.Fatalf("%s: %v", at, err)
			}
		case "category":
			if len(fields) != 2 {
				t.Fatalf("%s: category takes one name", at)
			}
			st.Category = fields[1]
		case "date":
			if len(fields) != 2 {
				t.Fatalf("%s: date takes one YYYY-MM-DD", at)
			}
			date = fields[1]
		case "check":
			checkState(t, at, st, fields[1:])
		default:
			tap, want, ok := strings.Cut(line, "=>")
			if !ok {
				t.Fatalf("%s: not a directive and no =>: %q", at, line)
			}
			tapped = true
			tp := parseTap(t, at, table(), date, strings.Fields(tap))
			q, next, err := table().Price(st, tp)
			got := formatQuote(q, err)
			if w := normalise(want); got != w {
				t.Errorf("%s: %s\n got  => %s\n want => %s", at, strings.TrimSpace(tap), got, w)
			}
			if err == nil {
				st = next
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func parseTap(t *testing.T, at string, tb *Table, date string, f []string) Tap {
	t.Helper()
	if date == "" {
		t.Fatalf("%s: no date before the first tap", at)
	}
	if len(f) < 4 || len(f) > 5 {
		t.Fatalf("%s: a tap is: time on|off operator route [stop]", at)
	}
	clock := f[0]
	if strings.Count(clock, ":") == 1 {
		clock += ":00"
	}
	when, err := time.ParseInLocation("2006-01-02 15:04:05", date+" "+clock, tb.Location())
	if err != nil {
		t.Fatalf("%s: %v", at, err)
	}
	tp := Tap{At: when, Kind: f[1], Operator: f[2], Route: f[3]}
	if len(f) == 5 {
		tp.Stop = f[4]
	}
	return tp
}

// formatQuote writes a quote as a script expects it.
func formatQuote(q Quote, err error) string {
	if err != nil {
		var b strings.Builder
		b.WriteString("error ")
		if fe, ok := err.(*Error); ok {
			b.WriteString(fe.Err.Error())
		} else {
			b.WriteString(err.Error())
		}
		return b.String()
	}
	var b strings.Builder
	if q.Refund != 0 || slices.ContainsFunc(q.Lines, func(l Line) bool { return l.Kind == LineRefund }) {
		fmt.Fprintf(&b, "refund %d", q.Refund)
	} else {
		fmt.Fprintf(&b, "charge %d", q.Charge)
	}
	if q.Transfer {
		b.WriteString(" transfer")
	}
	if q.Late {
		b.WriteString(" late")
	}
	b.WriteString(":")
	for i, l := range q.Lines {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %d", l.Kind, l.Amount)
	}
	return b.String()
}

// normalise spaces an expectation as formatQuote does.
func normalise(s string) string {
	head, lines, ok := strings.Cut(s, ":")
	out := strings.Join(strings.Fields(head), " ")
	if !ok {
		return out
	}
	out += ":"
	for i, l := range strings.Split(lines, ",") {
		if i > 0 {
			out += ","
		}
		out += " " + strings.Join(strings.Fields(l), " ")
	}
	return out
}

func checkState(t *testing.T, at string, st RiderState, kvs []string) {
	t.Helper()
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: check takes key=value, not %q", at, kv)
		}
		var got string
		switch k {
		case "day_spent":
			got = strconv.FormatInt(st.DaySpent, 10)
		case "week_spent":
			got = strconv.FormatInt(st.WeekSpent, 10)
		case "transfers":
			got = strconv.Itoa(st.Journey.Transfers)
		case "open":
			got = "none"
			if st.Open.At != 0 {
				got = st.Open.Operator + "/" + st.Open.Route + "/" + st.Open.Stop
			}
		default:
			t.Fatalf("%s: check knows day_spent, week_spent, transfers and open, not %q", at, k)
		}
		if got != v {
			t.Errorf("%s: %s = %s, want %s", at, k, got, v)
		}
	}
}

func mustDefault(t testing.TB) *Table {
	t.Helper()
	tb, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return tb
}
