package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadSpecs(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name, file string
		wantErr    string // substring; "" means success
	}{
		{"ok", `{"plugins":[{"name":"parking","path":"bin/parking","sha256":"` + sum + `","config":{"zone":"z1"},"env":["TZ=UTC"]}]}`, ""},
		{"unknown field", `{"plugins":[{"name":"parking","path":"p","sha265":"` + sum + `"}]}`, `unknown field "sha265"`},
		{"unknown top-level field", `{"plugin":[]}`, `unknown field "plugin"`},
		{"bad sum", `{"plugins":[{"name":"parking","path":"p","sha256":"abc"}]}`, "plugins[0].sha256"},
		{"no path", `{"plugins":[{"name":"parking","sha256":"` + sum + `"}]}`, "plugins[0].path"},
		{"bad name", `{"plugins":[{"name":"Parking","path":"p","sha256":"` + sum + `"}]}`, "plugins[0].name"},
		{"twice", `{"plugins":[{"name":"a","path":"p","sha256":"` + sum + `"},{"name":"a","path":"p","sha256":"` + sum + `"}]}`, "plugins[1].name"},
		{"wrong type", "{\"plugins\":[\n{\"name\":1}]}", "line 2"},
		{"trailing", `{"plugins":[]} {}`, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "plugins.json")
			if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			specs, err := LoadSpecs(file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 {
				t.Fatalf("got %d specs", len(specs))
			}
			s := specs[0]
			if s.Name != "parking" || s.Path != filepath.Join(dir, "bin/parking") || s.SHA256 != sum ||
				string(s.Config) != `{"zone":"z1"}` || len(s.Env) != 1 {
				t.Errorf("spec = %+v", s)
			}
		})
	}
}

func TestFileSHA256(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("citycard"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := FileSHA256(file)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("citycard"))
	if got != hex.EncodeToString(want[:]) {
		t.Errorf("FileSHA256 = %s, want %x", got, want)
	}
	if _, err := FileSHA256(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}

func TestBackoff(t *testing.T) {
	var o Options
	o.defaults()
	b := o.RestartBackoff
	want := []time.Duration{400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}
	d := b.Initial
	for i, w := range want {
		d = b.next(d)
		if d != w {
			t.Fatalf("step %d: %v, want %v", i, d, w)
		}
	}
	for range 20 {
		d = b.next(d)
	}
	if d != 30*time.Second {
		t.Errorf("capped at %v, want 30s", d)
	}
}
