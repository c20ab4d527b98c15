// Package cards runs the card life cycle on top of the ledger: issue,
// top-up, payment, pre-authorisation, reversal, loss, replacement and
// cancellation. Every change is a ledger.Op, so it is ordered, atomic and
// written by the single writer together with its idempotency record and its
// audit entry.
package cards

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
)

// System account codes in the chart of accounts.
const (
	AccountCash      = "cash:outlets"                // cash taken and paid out at outlets
	AccountBank      = "bank:acquirer"               // bank-card top-ups receivable from the acquirer
	AccountInsurer   = "bank:insurer"                // medical bills' fund shares receivable from the insurer
	AccountForfeited = "income:forfeited_deposits"   // deposits of cards reported lost and replaced
	AccountUnclaimed = "suspense:unclaimed_balances" // non-refundable balances of cancelled cards
)

// PurseCode is the ledger code of a card's purse account.
func PurseCode(card, purse string) string { return "purse:" + card + ":" + purse }

// DepositCode is the ledger code of a card's deposit account.
func DepositCode(card string) string { return "deposit:" + card }

// MerchantCode is the ledger code of what the hub owes a merchant.
func MerchantCode(id string) string { return "merchant:" + id }

// MaxPINTries is how many consecutive wrong PINs lock a card's PIN.
const MaxPINTries = 3

// Options configure the service.
type Options struct {
	// IssuerPrefix starts every card number (default cardno.DefaultPrefix).
	IssuerPrefix string
	// HoldTTL is how long a hold lasts when the request names no expiry
	// (default 7 days).
	HoldTTL time.Duration
	// Now is the clock for expiry checks made outside the writer (tests).
	Now func() time.Time
}

// Service is the card life cycle.
type Service struct {
	eng    *ledger.Engine
	st     store.Store
	cat    *catalog.Catalog
	rules  *rules
	opts   Options
	hasher func(pin string) (string, error)
	verify func(hash, pin string) (bool, error)
	// acceptors caches merchant ids ("m:ID") and terminal owners ("t:ID").
	acceptors sync.Map
}

// New returns the service.
func New(eng *ledger.Engine, cat *catalog.Catalog, opts Options) *Service {
	if opts.IssuerPrefix == "" {
		opts.IssuerPrefix = cardno.DefaultPrefix
	}
	if opts.HoldTTL <= 0 {
		opts.HoldTTL = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{eng: eng, st: eng.Store(), cat: cat, rules: &rules{cat: cat}, opts: opts, hasher: hashPIN, verify: verifyPIN}
}

// Catalog is the product and policy catalogue the service uses.
func (s *Service) Catalog() *catalog.Catalog { return s.cat }

// Call carries who is asking and how the answer is stored for retries.
type Call struct {
	Operator       string
	Role           string
	Remote         string
	RequestID      string
	IdempotencyKey string
	RequestHash    string
	// Encode renders the result as the stored answer (see ledger.Encoder).
	Encode ledger.Encoder
}

func (c Call) submitOptions(action, target string) ledger.SubmitOptions {
	o := ledger.SubmitOptions{RequestHash: c.RequestHash, Encode: c.Encode}
	if c.IdempotencyKey != "" {
		o.Idempotency = &store.IdemKey{Operator: c.Operator, Key: c.IdempotencyKey}
	}
	if c.Operator != "" {
		o.Audit = &store.AuditEntry{Operator: c.Operator, Role: c.Role, Action: action, Target: target, Remote: c.Remote}
		if c.RequestID != "" {
			o.Audit.Detail = "request_id=" + c.RequestID
		}
	}
	return o
}

func (s *Service) submit(ctx context.Context, c Call, action, target string, op ledger.Op) (ledger.Outcome, error) {
	return s.eng.Submit(ctx, op, c.submitOptions(action, target))
}

// Money checks shared by every request.
func checkAmount(amount int64, currency, want, field string) error {
	if err := checkPositive(amount, field); err != nil {
		return err
	}
	return checkCurrency(currency, want)
}

func checkPositive(amount int64, field string) error {
	if amount <= 0 {
		return fault.E(fault.InvalidAmount, field, fmt.Sprintf("amount must be a positive number of minor units, got %d", amount))
	}
	return nil
}

func checkCurrency(currency, want string) error {
	if currency != want {
		return fault.E(fault.CurrencyMismatch, "currency", fmt.Sprintf("currency must be %s, got %q", want, currency))
	}
	return nil
}

func checkNumber(number, field string) error {
	if err := cardno.Valid(number); err != nil {
		var fe *fault.Error
		if errors.As(err, &fe) {
			return fe.WithField(field)
		}
		return fault.E(fault.LuhnFailed, field, err.Error())
	}
	return nil
}

// loadCard reads a committed card, for checks made before the writer (PIN
// hashing is slow and must not run on the writer).
func (s *Service) loadCard(ctx context.Context, number, field string) (store.Card, error) {
	if err := checkNumber(number, field); err != nil {
		return store.Card{}, err
	}
	c, err := s.st.GetCard(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return store.Card{}, fault.E(fault.CardNotFound, field, fmt.Sprintf("no card %s", number))
	}
	return c, err
}

// cardProduct reads a committed card and its product.
func (s *Service) cardProduct(ctx context.Context, number, field string) (store.Card, catalog.Product, error) {
	c, err := s.loadCard(ctx, number, field)
	if err != nil {
		return c, catalog.Product{}, err
	}
	p, err := s.product(c.Product)
	return c, p, err
}

func (s *Service) product(code string) (catalog.Product, error) {
	p, ok := s.rules.product(code)
	if !ok {
		return catalog.Product{}, fault.E(fault.ProductNotFound, "product", fmt.Sprintf("no card product %q", code))
	}
	return p, nil
}

// cardInTx fetches the card inside an op, with the error every op uses.
func cardInTx(tx *ledger.Tx, number string) (store.Card, error) {
	c, ok := tx.Card(number)
	if !ok {
		return store.Card{}, fault.E(fault.CardNotFound, "card", fmt.Sprintf("no card %s", number))
	}
	return c, nil
}

// statusDecline is the decline reason for a card that may not pay, or "".
func statusDecline(c store.Card) string {
	switch c.Status {
	case store.CardActive:
		return ""
	case store.CardLost:
		return fault.CardLost
	case store.CardFrozen:
		return fault.CardFrozen
	default:
		return fault.CardClosed
	}
}

// systemAccount creates the hub's own accounts on first use.
func systemAccount(tx *ledger.Tx, code, currency string) *store.Account {
	kind := store.KindCash
	switch code {
	case AccountBank, AccountInsurer:
		kind = store.KindBank
	case AccountForfeited:
		kind = store.KindIncome
	case AccountUnclaimed:
		kind = store.KindSuspense
	}
	return tx.EnsureAccount(store.Account{Code: code, Kind: kind, Currency: currency})
}

// MerchantAccount returns merchant id's payable account, opening it with
// its first credit.
func MerchantAccount(tx *ledger.Tx, id, currency string) *store.Account {
	return merchantAccount(tx, id, currency)
}

func merchantAccount(tx *ledger.Tx, id, currency string) *store.Account {
	return tx.EnsureAccount(store.Account{Code: MerchantCode(id), Kind: store.KindMerchant, Currency: currency})
}

// IssuerPrefix starts every city card number this service issues; any
// other card number is a bank card's.
func (s *Service) IssuerPrefix() string { return s.opts.IssuerPrefix }

// Pending reports whether operator's write with idempotency key is being
// applied: a saga under that key is still open (waiting on a partner, or
// undoing what it did).
func (s *Service) Pending(ctx context.Context, operator, key string) (bool, error) {
	sg, err := s.st.GetSaga(ctx, operator, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fault.Wrap(fault.Unavailable, err)
	}
	return sg.Open(), nil
}

// Answer returns the stored answer to operator's write with idempotency
// key, and whether there is one.
func (s *Service) Answer(ctx context.Context, operator, key string) ([]byte, bool, error) {
	recs, err := s.st.LoadIdempotency(ctx, []store.IdemKey{{Operator: operator, Key: key}})
	if err != nil {
		return nil, false, fault.Wrap(fault.Unavailable, err)
	}
	if len(recs) == 0 {
		return nil, false, nil
	}
	return recs[0].Response, true, nil
}
