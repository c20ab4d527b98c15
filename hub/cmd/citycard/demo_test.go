package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs `citycard demo --exit` as a newcomer would: every bundled
// plugin and simulator starts, every flow prints ok, and it exits 0.
func TestDemo(t *testing.T) {
	bin := buildCitycard(t)
	out, code := runCitycard(t, bin, "demo", "--exit")
	if code != 0 {
		t.Fatalf("citycard demo --exit exited %d:\n%s", code, out)
	}
	flows := regexp.MustCompile(`(?m)^flow (.+): (.*)$`).FindAllStringSubmatch(out, -1)
	names := map[string]bool{}
	for _, f := range flows {
		if f[2] != "ok" {
			t.Errorf("flow %s: %s", f[1], f[2])
		}
		names[f[1]] = true
	}
	// The card life cycle, each bundled plugin's flows and the final audit.
	for _, want := range []string{"card: issue, top up, pay, report loss, replace and cancel", "ledger verify"} {
		if !names[want] {
			t.Errorf("no flow %q in:\n%s", want, out)
		}
	}
	for _, f := range bundles {
		b := f()
		for _, fl := range b.Flows {
			if !names[fl.Name] {
				t.Errorf("plugin %s's flow %q did not run:\n%s", b.Name, fl.Name, out)
			}
		}
	}
	if !strings.Contains(out, "0 flow(s) failed") {
		t.Errorf("no summary line:\n%s", out)
	}
}
