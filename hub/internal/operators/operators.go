// Package operators knows who may call the hub and what each role may do.
// Tokens are random, shown once, and stored only as a SHA-256 hash: they are
// long enough that a fast hash is safe, and lookups stay cheap.
package operators

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
)

// Roles.
const (
	Admin   = "admin"
	Teller  = "teller"
	Risk    = "risk"
	Finance = "finance"
	Auditor = "auditor"
)

// Roles lists every role.
var Roles = []string{Admin, Teller, Risk, Finance, Auditor}

// Permissions: the actions each role may take. Admin may do everything.
// Reads are open to every role; the auditor may only read.
var permissions = map[string][]string{
	Teller: {"cards.issue", "cards.topup", "cards.loss", "cards.replace", "cards.cancel", "cards.pin", "cards.bankcard",
		"payments.create", "holds.create", "holds.capture", "holds.void"},
	Risk: {"cards.loss", "cards.freeze", "cards.unfreeze"},
	Finance: {"transfers.reverse", "ledger.adjust", "merchants.create", "terminals.create", "products.put",
		"transit.devices.create"},
	Auditor: {},
}

// Read actions every role may take.
var reads = map[string]bool{"cards.read": true, "merchants.read": true, "terminals.read": true,
	"ledger.read": true, "products.read": true, "transfers.read": true, "holds.read": true,
	"plugins.read": true, "transit.read": true}

// auditOnly actions: only auditors and admins read the audit log.
var auditOnly = map[string]bool{"audit.read": true}

// Allowed reports whether role may take action.
func Allowed(role, action string) bool {
	switch {
	case role == Admin:
		return true
	case auditOnly[action]:
		return role == Auditor
	case reads[action]:
		return slices.Contains(Roles, role)
	}
	return slices.Contains(permissions[role], action)
}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// HashToken is how a token is stored.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewToken returns a fresh bearer token.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return "cc_" + base64.RawURLEncoding.EncodeToString(b)
}

// Add creates an operator and returns its token, which is never shown again.
func Add(ctx context.Context, st store.Store, name, role string) (store.Operator, string, error) {
	if !namePattern.MatchString(name) {
		return store.Operator{}, "", fault.E(fault.InvalidRequest, "name", fmt.Sprintf("operator name %q must be 1-64 letters, digits, '_', '.', '@' or '-'", name))
	}
	if !ValidRole(role) {
		return store.Operator{}, "", fault.E(fault.InvalidRequest, "role", fmt.Sprintf("role must be one of %v, got %q", Roles, role))
	}
	token := NewToken()
	op := store.Operator{ID: "op_" + name, Name: name, Role: role, TokenHash: HashToken(token), CreatedAt: time.Now().UTC()}
	if err := st.AddOperator(ctx, op); errors.Is(err, store.ErrConflict) {
		return store.Operator{}, "", fault.E(fault.Duplicate, "name", fmt.Sprintf("operator %s already exists", name))
	} else if err != nil {
		return store.Operator{}, "", err
	}
	return op, token, nil
}

// EnsureAdmin makes sure an admin holding token exists: for unattended
// set-ups that pass CITYCARD_ADMIN_TOKEN. An existing "admin" operator gets
// this token.
func EnsureAdmin(ctx context.Context, st store.Store, token string) error {
	if len(token) < 16 {
		return fault.E(fault.InvalidRequest, "CITYCARD_ADMIN_TOKEN", "the admin token must be at least 16 characters")
	}
	hash := HashToken(token)
	if op, err := st.OperatorByTokenHash(ctx, hash); err == nil {
		if op.Role != Admin {
			return fmt.Errorf("operators: the admin token belongs to %s, a %s", op.Name, op.Role)
		}
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	op, err := st.OperatorByName(ctx, "admin")
	if errors.Is(err, store.ErrNotFound) {
		return st.AddOperator(ctx, store.Operator{ID: "op_admin", Name: "admin", Role: Admin, TokenHash: hash, CreatedAt: time.Now().UTC()})
	}
	if err != nil {
		return err
	}
	if op.Role != Admin {
		return fmt.Errorf("operators: an operator named admin exists with role %s", op.Role)
	}
	return st.SetOperatorToken(ctx, op.ID, hash)
}

// Authenticate finds the operator holding token.
func Authenticate(ctx context.Context, st store.Store, token string) (store.Operator, error) {
	if token == "" {
		return store.Operator{}, fault.E(fault.Unauthorized, "Authorization", "a bearer token is required")
	}
	op, err := st.OperatorByTokenHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) || err == nil && op.Disabled {
		return store.Operator{}, fault.E(fault.Unauthorized, "Authorization", "the bearer token is not valid")
	}
	return op, err
}
