package cards

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
)

var (
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	mccPattern = regexp.MustCompile(`^[0-9]{4}$`)
)

// MerchantRequest registers a merchant.
type MerchantRequest struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	MCC               string `json:"mcc"`
	FeeRateBps        int64  `json:"fee_rate_bps"`
	SettlementAccount string `json:"settlement_account"`
}

// AddMerchant registers a merchant. Its payable account in the ledger is
// opened with its first payment.
func (s *Service) AddMerchant(ctx context.Context, req MerchantRequest) (store.Merchant, error) {
	if err := checkTexts(
		textField{"id", req.ID, MaxIDLen, false},
		textField{"name", req.Name, MaxNameLen, false},
		textField{"settlement_account", req.SettlementAccount, MaxIDLen, false},
	); err != nil {
		return store.Merchant{}, err
	}
	switch {
	case !idPattern.MatchString(req.ID):
		return store.Merchant{}, fault.E(fault.InvalidRequest, "id", fmt.Sprintf("merchant id %q must be 1-64 letters, digits, '_', '.' or '-'", req.ID))
	case strings.TrimSpace(req.Name) == "":
		return store.Merchant{}, fault.E(fault.InvalidRequest, "name", "name is required")
	case !mccPattern.MatchString(req.MCC):
		return store.Merchant{}, fault.E(fault.InvalidRequest, "mcc", fmt.Sprintf("mcc must be a 4-digit merchant category code, got %q", req.MCC))
	case req.FeeRateBps < 0 || req.FeeRateBps > 10000:
		return store.Merchant{}, fault.E(fault.InvalidRequest, "fee_rate_bps", fmt.Sprintf("fee_rate_bps must be 0..10000, got %d", req.FeeRateBps))
	case strings.TrimSpace(req.SettlementAccount) == "":
		return store.Merchant{}, fault.E(fault.InvalidRequest, "settlement_account", "settlement_account is required")
	}
	m := store.Merchant{ID: req.ID, Name: req.Name, MCC: req.MCC, FeeRateBps: req.FeeRateBps,
		SettlementAccount: req.SettlementAccount, CreatedAt: s.opts.Now().UTC()}
	if err := s.st.AddMerchant(ctx, m); errors.Is(err, store.ErrConflict) {
		return store.Merchant{}, fault.E(fault.Duplicate, "id", fmt.Sprintf("merchant %s already exists", req.ID))
	} else if err != nil {
		return store.Merchant{}, err
	}
	return s.st.GetMerchant(ctx, req.ID)
}

// Merchants lists merchants.
func (s *Service) Merchants(ctx context.Context) ([]store.Merchant, error) {
	return s.st.ListMerchants(ctx)
}

// Merchant reads one merchant.
func (s *Service) Merchant(ctx context.Context, id string) (store.Merchant, error) {
	m, err := s.st.GetMerchant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return m, fault.E(fault.MerchantNotFound, "id", fmt.Sprintf("no merchant %q", id))
	}
	return m, err
}

// TerminalRequest registers a terminal.
type TerminalRequest struct {
	ID       string `json:"id"`
	Merchant string `json:"merchant"`
}

// AddTerminal registers a terminal of one merchant.
func (s *Service) AddTerminal(ctx context.Context, req TerminalRequest) (store.Terminal, error) {
	if err := CheckText("merchant", req.Merchant, MaxIDLen, false); err != nil {
		return store.Terminal{}, err
	}
	if !idPattern.MatchString(req.ID) {
		return store.Terminal{}, fault.E(fault.InvalidRequest, "id", fmt.Sprintf("terminal id %q must be 1-64 letters, digits, '_', '.' or '-'", req.ID))
	}
	err := s.st.AddTerminal(ctx, store.Terminal{ID: req.ID, Merchant: req.Merchant, CreatedAt: s.opts.Now().UTC()})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Terminal{}, fault.E(fault.MerchantNotFound, "merchant", fmt.Sprintf("no merchant %q", req.Merchant))
	case errors.Is(err, store.ErrConflict):
		return store.Terminal{}, fault.E(fault.Duplicate, "id", fmt.Sprintf("terminal %s already exists", req.ID))
	case err != nil:
		return store.Terminal{}, err
	}
	return s.st.GetTerminal(ctx, req.ID)
}

// Terminals lists terminals, of one merchant when merchant is not empty.
func (s *Service) Terminals(ctx context.Context, merchant string) ([]store.Terminal, error) {
	return s.st.ListTerminals(ctx, merchant)
}
