package cardcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeyStore seals keys for storage at rest with AES-256-GCM under a top key
// that lives outside the database (an environment variable or a file). The
// name a key is sealed under is authenticated with it, so a sealed blob
// copied to another row does not open.
type KeyStore struct {
	aead cipher.AEAD
}

// sealedVersion prefixes every blob so the format can change later.
const sealedVersion byte = 1

// TopKeySource says where the top key comes from. Env is the name of an
// environment variable holding the key; File is a path to a file holding it.
// Env is tried first. The key is 32 bytes written as 64 hex digits or as
// standard base64.
type TopKeySource struct {
	Env  string
	File string
}

// OpenKeyStore loads the top key from src. The error says which source was
// tried and what was wrong, never the key.
func OpenKeyStore(src TopKeySource) (*KeyStore, error) {
	const op = "OpenKeyStore"
	var text, from string
	if src.Env != "" {
		if v, ok := os.LookupEnv(src.Env); ok && strings.TrimSpace(v) != "" {
			text, from = v, "environment variable "+src.Env
		}
	}
	if text == "" && src.File != "" {
		b, err := os.ReadFile(src.File)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			reason := err.Error()
			var pe *os.PathError
			if errors.As(err, &pe) {
				reason = pe.Err.Error()
			}
			return nil, newErr(op, ErrTopKeyMissing, "cannot read file "+src.File+": "+reason)
		default:
			text, from = string(b), "file "+src.File
		}
	}
	if strings.TrimSpace(text) == "" {
		var tried []string
		if src.Env != "" {
			tried = append(tried, "environment variable "+src.Env)
		}
		if src.File != "" {
			tried = append(tried, "file "+src.File)
		}
		if len(tried) == 0 {
			return nil, newErr(op, ErrTopKeyMissing, "no source configured")
		}
		return nil, newErr(op, ErrTopKeyMissing, "set "+strings.Join(tried, " or "))
	}
	key, err := decodeTopKey(strings.TrimSpace(text))
	if err != nil {
		return nil, newErr(op, ErrTopKeyInvalid, "from "+from+": want 32 bytes as 64 hex digits or base64")
	}
	return NewKeyStore(key)
}

func decodeTopKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, ErrTopKeyInvalid
}

// NewKeyStore uses a 32-byte top key directly (for tests and for callers
// that fetch it from elsewhere).
func NewKeyStore(topKey []byte) (*KeyStore, error) {
	if len(topKey) != 32 {
		return nil, newErr("NewKeyStore", ErrTopKeyInvalid, fmt.Sprintf("%d bytes, want 32", len(topKey)))
	}
	block, err := aes.NewCipher(topKey)
	if err != nil {
		return nil, newErr("NewKeyStore", ErrTopKeyInvalid, "")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, newErr("NewKeyStore", ErrTopKeyInvalid, "")
	}
	return &KeyStore{aead: aead}, nil
}

// Seal encrypts key for storage under name (for example
// "terminal/12345678/tmk"). The blob is version, nonce, ciphertext and tag.
func (s *KeyStore) Seal(name string, key Key) ([]byte, error) {
	if len(key) == 0 {
		return nil, newErr("KeyStore.Seal", ErrInvalidKey, "empty key")
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, newErr("KeyStore.Seal", ErrInvalidData, "no randomness")
	}
	out := append([]byte{sealedVersion}, nonce...)
	return s.aead.Seal(out, nonce, key, []byte(name)), nil
}

// Open decrypts a blob made by Seal under the same name. A wrong top key, a
// different name or an altered blob all give an error wrapping
// ErrKeyStoreOpen.
func (s *KeyStore) Open(name string, blob []byte) (Key, error) {
	ns := s.aead.NonceSize()
	if len(blob) < 1+ns+s.aead.Overhead() || blob[0] != sealedVersion {
		return nil, newErr("KeyStore.Open", ErrKeyStoreOpen, "not a sealed key")
	}
	nonce := blob[1 : 1+ns]
	clear, err := s.aead.Open(nil, nonce, blob[1+ns:], []byte(name))
	if err != nil {
		return nil, newErr("KeyStore.Open", ErrKeyStoreOpen, fmt.Sprintf("for name %q", name))
	}
	return Key(clear), nil
}
