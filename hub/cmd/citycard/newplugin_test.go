package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
)

// TestPluginFromTheGuide does what a partner new to CityCard does: takes
// the plugin and its test out of docs/writing-a-plugin.md into a module of
// its own, runs its test, builds it, proves it with `citycard conformance`,
// and runs it under `citycard serve`, where a message sent to it charges a
// card in the hub's ledger.
func TestPluginFromTheGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the guide's plugin, which builds a module of its own")
	}
	t.Cleanup(pin.SetCostForTesting(1, 8))
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH: %v", err)
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile(filepath.Join(repo, "docs", "writing-a-plugin.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"main.go", "main_test.go"} {
		code := guideBlock(t, string(guide), "sdk/examples/bikes/"+f)
		if err := os.WriteFile(filepath.Join(dir, f), []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The guide's `go mod init` and `go get`, with the sdk taken from this
	// checkout rather than a release.
	gomod := "module example.com/bikes\n\ngo 1.26\n\nrequire github.com/citycard/citycard v0.0.0\n\nreplace github.com/citycard/citycard => " + repo + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	gocmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command(gobin, args...)
		cmd.Dir = dir
		cmd.Env = append(childEnv(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gocmd("mod", "tidy")
	gocmd("test", "./...")
	gocmd("build", "-o", "citycard-plugin-bikes", ".")
	plugin := filepath.Join(dir, "citycard-plugin-bikes")

	bin := buildCitycard(t)
	out, code := runCitycard(t, bin, "conformance", "--config", filepath.Join(repo, "conformance", "testdata", "bikes.json"), plugin)
	if code != 0 {
		t.Fatalf("citycard conformance exited %d:\n%s", code, out)
	}

	sum, err := pluginhost.FileSHA256(plugin)
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := json.Marshal(map[string]any{"plugins": []map[string]any{{"name": "bikes", "path": plugin, "sha256": sum,
		"channel": "retail", "config": map[string]any{"fare_per_half_hour": 150, "merchant": "M-BIKES"}}}})
	confFile := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	const admin = "guide-test-admin-token"
	srv := startServer(t, bin, "sqlite://"+filepath.Join(dir, "hub.db"), admin, "--plugins", confFile)
	c := newClient(srv.url, admin)
	c.must(t, "POST", "/v1/merchants", 201, map[string]any{"id": "M-BIKES", "name": "City bikes", "mcc": "7999", "settlement_account": "1"}, nil)
	var card struct {
		Number string `json:"number"`
	}
	c.must(t, "POST", "/v1/cards", 201, map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, &card)
	c.must(t, "POST", "/v1/cards/"+card.Number+"/topups", 201, map[string]any{"amount": 2000, "currency": "CNY"}, nil)
	var ans struct {
		Replies []struct {
			Type    string `json:"type"`
			Payload struct {
				Amount int64 `json:"amount"`
				Hub    struct {
					Status  string `json:"status"`
					Balance int64  `json:"balance"`
				} `json:"hub"`
			} `json:"payload"`
		} `json:"replies"`
	}
	c.must(t, "POST", "/v1/plugins/bikes/messages", 200, map[string]any{"type": "bikes.return.v1",
		"payload": map[string]any{"ride": "D7-000381", "card": card.Number, "minutes": 42}}, &ans)
	if len(ans.Replies) != 1 || ans.Replies[0].Type != "bikes.receipt.v1" || ans.Replies[0].Payload.Amount != 300 ||
		ans.Replies[0].Payload.Hub.Status != "approved" || ans.Replies[0].Payload.Hub.Balance != 1700 {
		t.Fatalf("the ride's receipt: %+v", ans)
	}
	var got struct {
		Balance int64 `json:"balance"`
	}
	c.must(t, "GET", "/v1/cards/"+card.Number, 200, nil, &got)
	if got.Balance != 1700 {
		t.Fatalf("card balance %d after a 3.00 ride from 20.00", got.Balance)
	}
}

// guideBlock returns the Go code block the guide marks as the same as file.
func guideBlock(t *testing.T, guide, file string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- same as " + regexp.QuoteMeta(file) + " -->\n```go\n(.*?)```")
	m := re.FindStringSubmatch(guide)
	if m == nil {
		t.Fatalf("docs/writing-a-plugin.md has no code block marked as %s", file)
	}
	return m[1]
}
