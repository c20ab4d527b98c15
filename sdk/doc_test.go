package sdk_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// The guide's code is real code: each block marked "same as FILE" must be
// that file, and the guide's plugin must be the one Example_bikes runs.
// Edit the files, then paste them into the guide.
func TestGuideMatchesCode(t *testing.T) {
	guide, err := os.Open("../docs/writing-a-plugin.md")
	if err != nil {
		t.Fatal(err)
	}
	defer guide.Close()
	blocks := map[string]string{}
	var file string
	var block *strings.Builder
	s := bufio.NewScanner(guide)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "<!-- same as sdk/"):
			file = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- same as sdk/"), " -->")
		case file != "" && block == nil && line == "```go":
			block = &strings.Builder{}
		case block != nil && line == "```":
			blocks[file] = block.String()
			file, block = "", nil
		case block != nil:
			block.WriteString(line + "\n")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"examples/bikes/main.go", "examples/bikes/main_test.go"} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := blocks[f]
		if !ok {
			t.Errorf("the guide does not show %s", f)
			continue
		}
		if got != string(want) {
			t.Errorf("the guide's copy of %s differs from the file", f)
		}
	}

	main, err := os.ReadFile("examples/bikes/main.go")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	plugin := string(main)[strings.Index(string(main), "// Dock is"):]
	if !strings.Contains(string(example), plugin) {
		t.Error("example_test.go does not hold the plugin of examples/bikes/main.go verbatim")
	}
}
