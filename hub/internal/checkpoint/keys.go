package checkpoint

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// DefaultKeyName names the hub's signing key in its notes.
const DefaultKeyName = "citycard-ledger"

// KeyPaths are where the keys of a log live by default: beside it, the
// signer key (secret, mode 0600) in LOG.key and the verifier key in LOG.pub.
func KeyPaths(log string) (signer, verifier string) { return log + ".key", log + ".pub" }

// LoadOrCreateSigner reads the signer key at signerPath, or, when there is
// none, generates a key pair named name and writes the signer key there
// (mode 0600) and the verifier key at verifierPath. It returns the signer
// and the verifier key's text.
func LoadOrCreateSigner(signerPath, verifierPath, name string) (note.Signer, string, error) {
	s, err := LoadSigner(signerPath)
	if err == nil {
		vkey, err := os.ReadFile(verifierPath)
		if err != nil {
			return nil, "", fmt.Errorf("checkpoint: verifier key: %w", err)
		}
		return s, strings.TrimSpace(string(vkey)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: generate key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(signerPath), 0o750); err != nil {
		return nil, "", fmt.Errorf("checkpoint: %w", err)
	}
	// O_EXCL: two hubs racing for the first key never overwrite each other's.
	f, err := os.OpenFile(signerPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: signer key: %w", err)
	}
	_, werr := f.WriteString(skey + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return nil, "", fmt.Errorf("checkpoint: signer key: %w", err)
	}
	if err := os.WriteFile(verifierPath, []byte(vkey+"\n"), 0o644); err != nil {
		return nil, "", fmt.Errorf("checkpoint: verifier key: %w", err)
	}
	s, err = note.NewSigner(skey)
	return s, vkey, err
}

// LoadSigner reads a signer key file.
func LoadSigner(path string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: signer key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: signer key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifier reads a verifier key file.
func LoadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: verifier key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: verifier key %s: %w", path, err)
	}
	return v, nil
}

// Sign signs c with s as a note.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, s)
}
