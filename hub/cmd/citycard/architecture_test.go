package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportWalls keeps the walls docs/architecture.md describes: who may
// import whom. It reads the module's own import graph (without tests) with
// go list, so a change that crosses a wall fails here, however it builds.
func TestImportWalls(t *testing.T) {
	const module = "github.com/citycard/citycard/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// services are the hub's rooms below the API and the CLI.
	service := func(p string) bool {
		if !strings.HasPrefix(p, "hub/internal/") {
			return false
		}
		switch strings.SplitN(strings.TrimPrefix(p, "hub/internal/"), "/", 2)[0] {
		case "api", "wiring", "faulttest", "logtest":
			return false
		}
		return true
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	rules := []struct {
		name string
		bad  func(from, to string) bool
	}{
		{"sdk/ never imports hub/", func(from, to string) bool {
			return under(from, "sdk") && under(to, "hub")
		}},
		{"a plugin imports only sdk/, schemas/, its own folder and plugins/demo", func(from, to string) bool {
			if !under(from, "plugins") || under(from, "plugins/demo") {
				return false
			}
			own := "plugins/" + strings.SplitN(strings.TrimPrefix(from, "plugins/"), "/", 2)[0]
			return !under(to, "sdk") && !under(to, "schemas") && !under(to, own) && !under(to, "plugins/demo")
		}},
		{"no hub package imports a plugin package", func(from, to string) bool {
			return under(from, "hub/internal") && under(to, "plugins")
		}},
		{"hub services never import the API or the CLI", func(from, to string) bool {
			return service(from) && (under(to, "hub/internal/api") || under(to, "hub/cmd"))
		}},
		{"the store imports no service above it", func(from, to string) bool {
			return under(from, "hub/internal/store") && under(to, "hub/internal") && !under(to, "hub/internal/store")
		}},
	}
	edges := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], module) {
			continue
		}
		from := strings.TrimPrefix(fields[0], module)
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := strings.TrimPrefix(imp, module)
			edges++
			for _, r := range rules {
				if r.bad(from, to) {
					t.Errorf("%s: %s imports %s", r.name, from, to)
				}
			}
		}
	}
	// A graph this small means go list read the wrong thing.
	if edges < 100 {
		t.Fatalf("read only %d imports inside the module", edges)
	}
}
