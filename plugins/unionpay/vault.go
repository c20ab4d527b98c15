package unionpay

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/citycard/citycard/sdk/cardcrypto"
)

// vaultFile is the token vault's name in the state directory.
const vaultFile = "unionpay.vault"

// lookupKeyName is the name the vault's lookup key is sealed under.
const lookupKeyName = "unionpay/vault/lookup-key"

var errUnknownToken = errors.New("unionpay: unknown token")

// vaultRecord is one line of the vault. The first line holds the lookup
// key sealed under the top key; every later line a token, its card number
// and expiry sealed under the top key (bound to the token), and an HMAC of
// the card number under the lookup key, by which the same card finds its
// token again. No card number is ever written in clear.
type vaultRecord struct {
	Op        string `json:"op"` // key, token
	Token     string `json:"token,omitempty"`
	Lookup    string `json:"lookup,omitempty"`
	Sealed    []byte `json:"sealed"`
	MaskedPAN string `json:"masked_pan,omitempty"`
}

// vaultEntry is a token's card, opened.
type vaultEntry struct {
	pan    cardcrypto.PAN
	expiry string
}

// vault keeps the linked bank cards: tokens and their card numbers, sealed
// (AES-GCM) under the key store's top key, in an append-only file that is
// fsync'd before a token is answered.
type vault struct {
	mu       sync.Mutex
	f        *os.File
	store    *cardcrypto.KeyStore
	lookup   []byte
	byToken  map[string]vaultRecord
	byLookup map[string]string
}

// openVault opens (or creates) the vault in dir under store's top key. A
// top key that does not open the vault's lookup key is refused.
func openVault(dir string, store *cardcrypto.KeyStore) (*vault, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unionpay: state directory: %w", err)
	}
	path := filepath.Join(dir, vaultFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unionpay: vault: %w", err)
	}
	v := &vault{f: f, store: store, byToken: map[string]vaultRecord{}, byLookup: map[string]string{}}
	fail := func(err error) (*vault, error) {
		_ = f.Close()
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fail(fmt.Errorf("unionpay: vault: %w", err))
	}
	good := 0
	for good < len(raw) {
		end := bytes.IndexByte(raw[good:], '\n')
		if end < 0 {
			break
		}
		var r vaultRecord
		if err := json.Unmarshal(raw[good:good+end], &r); err != nil {
			break
		}
		switch r.Op {
		case "key":
			if v.lookup == nil {
				k, err := store.Open(lookupKeyName, r.Sealed)
				if err != nil {
					return fail(errors.New("unionpay: vault: the key store's top key does not open this vault"))
				}
				v.lookup = k
			}
		case "token":
			v.byToken[r.Token] = r
			v.byLookup[r.Lookup] = r.Token
		}
		good += end + 1
	}
	if good < len(raw) {
		if err := f.Truncate(int64(good)); err != nil {
			return fail(fmt.Errorf("unionpay: vault: %w", err))
		}
	}
	if v.lookup == nil {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return fail(err)
		}
		sealed, err := store.Seal(lookupKeyName, k)
		if err != nil {
			return fail(err)
		}
		if err := v.writeLocked(vaultRecord{Op: "key", Sealed: sealed}); err != nil {
			return fail(err)
		}
		v.lookup = k
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync() // the new file's directory entry
			_ = d.Close()
		}
	}
	return v, nil
}

func (v *vault) writeLocked(r vaultRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := v.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("unionpay: vault: %w", err)
	}
	if err := v.f.Sync(); err != nil {
		return fmt.Errorf("unionpay: vault: %w", err)
	}
	if r.Op == "token" {
		v.byToken[r.Token] = r
		v.byLookup[r.Lookup] = r.Token
	}
	return nil
}

func (v *vault) lookupOf(pan cardcrypto.PAN) string {
	m := hmac.New(sha256.New, v.lookup)
	m.Write([]byte(pan.Reveal()))
	return hex.EncodeToString(m.Sum(nil))
}

func tokenName(token string) string { return "unionpay/token/" + token }

// tokenize returns the card's token, making one the first time. A card
// tokenised again with another expiry keeps its token and takes the new
// expiry.
func (v *vault) tokenize(pan cardcrypto.PAN, expiry string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.f == nil {
		return "", errors.New("unionpay: vault closed")
	}
	lookup := v.lookupOf(pan)
	token, ok := v.byLookup[lookup]
	if ok {
		if e, err := v.openLocked(token); err == nil && e.expiry == expiry {
			return token, nil
		}
	} else {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		token = "tok_" + hex.EncodeToString(b)
	}
	sealed, err := v.store.Seal(tokenName(token), cardcrypto.Key(pan.Reveal()+"="+expiry))
	if err != nil {
		return "", err
	}
	if err := v.writeLocked(vaultRecord{Op: "token", Token: token, Lookup: lookup, Sealed: sealed, MaskedPAN: pan.Masked()}); err != nil {
		return "", err
	}
	return token, nil
}

// card returns the card of a token; errUnknownToken when there is none.
func (v *vault) card(token string) (vaultEntry, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.openLocked(token)
}

func (v *vault) openLocked(token string) (vaultEntry, error) {
	r, ok := v.byToken[token]
	if !ok {
		return vaultEntry{}, errUnknownToken
	}
	clear, err := v.store.Open(tokenName(token), r.Sealed)
	if err != nil {
		return vaultEntry{}, fmt.Errorf("unionpay: vault: token %s does not open: %w", r.MaskedPAN, err)
	}
	defer clear.Wipe()
	number, expiry, ok := strings.Cut(string(clear), "=")
	if !ok {
		return vaultEntry{}, errors.New("unionpay: vault: a sealed card is malformed")
	}
	pan, err := cardcrypto.ParsePAN(number)
	if err != nil {
		return vaultEntry{}, errors.New("unionpay: vault: a sealed card number is malformed")
	}
	return vaultEntry{pan: pan, expiry: expiry}, nil
}

func (v *vault) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.f == nil {
		return nil
	}
	err := v.f.Close()
	v.f = nil
	return err
}
