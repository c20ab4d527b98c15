package pluginhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// Spec is one plugin as the hub's configuration lists it.
type Spec struct {
	// Name is the plugin's name in the hub: logs, metrics and Handle use it.
	Name string `json:"name"`
	// Path is the plugin binary. LoadSpecs resolves a relative path against
	// the directory of the configuration file.
	Path string `json:"path"`
	// Args are passed to the binary.
	Args []string `json:"args,omitempty"`
	// SHA256 is the hex SHA-256 sum of the binary; go-plugin refuses to run
	// a binary that does not match it.
	SHA256 string `json:"sha256"`
	// Config is handed to the plugin's Configure after it has been checked
	// against the plugin's own config schema.
	Config json.RawMessage `json:"config,omitempty"`
	// Env is the plugin's whole environment ("KEY=value"): it never inherits
	// the hub's, which holds credentials a partner's code must not read.
	Env []string `json:"env,omitempty"`
	// Channel is the channel policy (channels/*.json) under which the hub
	// makes the card payments the plugin submits; without one the plugin
	// cannot submit payments.
	Channel string `json:"channel,omitempty"`
	// Bundled names a reference plugin shipped inside the citycard binary:
	// the hub runs `citycard plugin serve NAME` and fills Path, Args and
	// SHA256 itself, so they are left out.
	Bundled bool `json:"bundled,omitempty"`
}

// specFile is the layout of a plugin configuration file.
type specFile struct {
	Plugins []Spec `json:"plugins"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// LoadSpecs reads a plugin configuration file of the form
// {"plugins":[{"name":…,"path":…,"sha256":…,"config":{…}}]}. It is strict:
// an unknown field is an error naming the field, so a typo such as "sha265"
// is caught at start-up rather than running an unchecked binary.
func LoadSpecs(file string) ([]Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f specFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", file, jsonError(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the top-level object", file)
	}
	seen := map[string]bool{}
	for i := range f.Plugins {
		s := &f.Plugins[i]
		if s.Bundled && (s.Path != "" || s.SHA256 != "" || len(s.Args) > 0) {
			return nil, fmt.Errorf("%s: plugins[%d].bundled: plugin %s is bundled, so it takes no path, args or sha256", file, i, s.Name)
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%s: plugins[%d]%s", file, i, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s: plugins[%d].name: plugin %q is listed twice", file, i, s.Name)
		}
		seen[s.Name] = true
		if !s.Bundled && !filepath.IsAbs(s.Path) {
			s.Path = filepath.Join(filepath.Dir(file), s.Path)
		}
	}
	return f.Plugins, nil
}

// jsonError adds the line and column to a syntax or type error, so the
// operator can find the mistake in a long file.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return err
	}
	line, col := 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// validate checks what the JSON decoder cannot; errors start with the
// field, e.g. ".sha256: …".
func (s *Spec) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf(".name: %q is not a plugin name (lower case, digits and single dashes)", s.Name)
	}
	if s.Bundled && s.Path == "" {
		// Not resolved yet: the citycard command fills Path, Args and
		// SHA256 from its own binary.
		return nil
	}
	if s.Path == "" {
		return fmt.Errorf(".path: plugin %s has no path", s.Name)
	}
	if _, err := s.sum(); err != nil {
		return fmt.Errorf(".sha256: plugin %s: %v", s.Name, err)
	}
	return nil
}

// sum decodes SHA256.
func (s *Spec) sum() ([]byte, error) {
	b, err := hex.DecodeString(s.SHA256)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%q is not a hex SHA-256 sum (64 hex digits)", s.SHA256)
	}
	return b, nil
}

// FileSHA256 returns the hex SHA-256 sum of the file at path, as Spec.SHA256
// wants it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
