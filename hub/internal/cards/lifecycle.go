package cards

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
)

// Holder is the card holder as the request gives it.
type Holder struct {
	Name     string `json:"name"`
	IDType   string `json:"id_type"`
	IDNumber string `json:"id_number"`
	Phone    string `json:"phone,omitempty"`
}

// ID types a card may be applied for with.
var idTypes = map[string]bool{"resident_id": true, "military_id": true, "passport": true}

// PurseView is one purse's balances.
type PurseView struct {
	Purse     string `json:"purse"`
	Posted    int64  `json:"posted"`
	Pending   int64  `json:"pending"`
	Available int64  `json:"available"`
}

// CardView is what an operator sees of a card.
type CardView struct {
	Number     string      `json:"number"`
	Status     string      `json:"status"`
	Product    string      `json:"product"`
	Currency   string      `json:"currency"`
	Holder     *HolderView `json:"holder,omitempty"`
	Purses     []PurseView `json:"purses"`
	Deposit    int64       `json:"deposit"`
	Balance    int64       `json:"balance"`
	PINSet     bool        `json:"pin_set"`
	PINLocked  bool        `json:"pin_locked"`
	ReplacedBy string      `json:"replaced_by,omitempty"`
	Replaces   string      `json:"replaces,omitempty"`
	IssuedAt   time.Time   `json:"issued_at"`
}

// HolderView shows the holder with the ID number masked.
type HolderView struct {
	Name     string `json:"name"`
	IDType   string `json:"id_type"`
	IDNumber string `json:"id_number_masked"`
	Phone    string `json:"phone,omitempty"`
}

// Receipt is the printable slip of a counter transaction.
type Receipt struct {
	Number       string    `json:"number"`
	At           time.Time `json:"at"`
	Teller       string    `json:"teller,omitempty"`
	Kind         string    `json:"kind"`
	Card         string    `json:"card"`
	Purse        string    `json:"purse,omitempty"`
	Method       string    `json:"method,omitempty"`
	Amount       int64     `json:"amount"`
	Currency     string    `json:"currency"`
	BalanceAfter int64     `json:"balance_after"`
	Transfer     string    `json:"transfer"`
}

func maskID(s string) string {
	if len(s) <= 4 {
		return strings.Repeat("*", len(s))
	}
	return strings.Repeat("*", len(s)-4) + s[len(s)-4:]
}

// view renders a card from the accounts the caller has.
func view(c store.Card, p catalog.Product, accs map[string]store.Account) CardView {
	v := CardView{Number: c.Number, Status: c.Status, Product: c.Product, Currency: c.Currency,
		PINSet: c.PinHash != "", PINLocked: c.PinTries >= MaxPINTries, ReplacedBy: c.ReplacedBy,
		Replaces: c.Replaces, IssuedAt: c.IssuedAt, Purses: []PurseView{}}
	if c.HolderName != "" || c.IDNumber != "" {
		v.Holder = &HolderView{Name: c.HolderName, IDType: c.IDType, IDNumber: maskID(c.IDNumber), Phone: c.Phone}
	}
	for _, pu := range p.Purses {
		a := accs[PurseCode(c.Number, pu.Name)]
		pv := PurseView{Purse: pu.Name, Posted: ledger.Balance(a), Pending: a.DebitsPending, Available: ledger.Available(a)}
		v.Purses = append(v.Purses, pv)
		v.Balance += pv.Posted
	}
	d := accs[DepositCode(c.Number)]
	v.Deposit = ledger.Balance(d)
	return v
}

func viewInTx(tx *ledger.Tx, c store.Card, p catalog.Product) CardView {
	accs := map[string]store.Account{}
	for _, pu := range p.Purses {
		if a := tx.Account(PurseCode(c.Number, pu.Name)); a != nil {
			accs[a.Code] = *a
		}
	}
	if a := tx.Account(DepositCode(c.Number)); a != nil {
		accs[a.Code] = *a
	}
	return view(c, p, accs)
}

// Get reads a card as committed.
func (s *Service) Get(ctx context.Context, number string) (CardView, error) {
	c, err := s.loadCard(ctx, number, "number")
	if err != nil {
		return CardView{}, err
	}
	p, err := s.product(c.Product)
	if err != nil {
		return CardView{}, err
	}
	as, err := s.st.CardAccounts(ctx, number)
	if err != nil {
		return CardView{}, err
	}
	accs := map[string]store.Account{}
	for _, a := range as {
		accs[a.Code] = a
	}
	return view(c, p, accs), nil
}

// IssueRequest applies for a card.
type IssueRequest struct {
	Holder  Holder `json:"holder"`
	Product string `json:"product"`
	PIN     string `json:"pin,omitempty"`
	// Method is how the deposit is paid: cash (default) or bank_card.
	Method string `json:"method,omitempty"`
}

// IssueResult is a new card.
type IssueResult struct {
	CardView
	Receipt Receipt `json:"receipt"`
}

type issueOp struct {
	req     IssueRequest
	p       catalog.Product
	pinHash string
	prefix  string
	teller  string
}

func (o *issueOp) Prefetch(k *ledger.Keys) { k.Account(AccountCash, AccountBank) }

func (o *issueOp) Apply(tx *ledger.Tx) (any, error) {
	serial := tx.NextCardSerial()
	number, err := cardno.New(o.prefix, serial)
	if err != nil {
		return nil, fault.Wrap(fault.Internal, err)
	}
	cur := o.p.Currency
	c := store.Card{Number: number, Product: o.p.Code, Status: store.CardActive, HolderName: o.req.Holder.Name,
		IDType: o.req.Holder.IDType, IDNumber: o.req.Holder.IDNumber, Phone: o.req.Holder.Phone,
		PinHash: o.pinHash, Deposit: o.p.Deposit, Currency: cur}
	tx.PutCard(c)
	openAccounts(tx, number, o.p)
	r, err := takeDeposit(tx, "issue", number, o.p, o.req.Method, o.teller)
	if err != nil {
		return nil, err
	}
	c, _ = tx.Card(number)
	v := viewInTx(tx, c, o.p)
	r.BalanceAfter = v.Balance
	return &IssueResult{CardView: v, Receipt: r}, nil
}

// takeDeposit posts a new card's deposit, paid at the counter, and
// returns the receipt (numbered after the transfer when there is one).
func takeDeposit(tx *ledger.Tx, kind, number string, p catalog.Product, method, teller string) (Receipt, error) {
	r := Receipt{Kind: kind, Card: number, Method: methodOr(method), Amount: p.Deposit, Currency: p.Currency, Teller: teller, At: tx.Now()}
	if p.Deposit == 0 {
		return r, nil
	}
	id, err := tx.Post(store.Transfer{Kind: store.TransferIssue, Currency: p.Currency, Card: number, Operator: teller,
		Entries: []store.Entry{
			{Account: fundingAccount(tx, method, p.Currency).ID, Amount: p.Deposit},
			{Account: tx.Account(DepositCode(number)).ID, Amount: -p.Deposit},
		}}, time.Time{})
	if err != nil {
		return r, err
	}
	r.Number, r.Transfer = receiptNo(id), strconv.FormatInt(id, 10)
	return r, nil
}

func openAccounts(tx *ledger.Tx, number string, p catalog.Product) {
	for _, pu := range p.Purses {
		tx.EnsureAccount(store.Account{Code: PurseCode(number, pu.Name), Kind: store.KindPurse, Currency: p.Currency,
			Card: number, Purse: pu.Name, Constrained: true, NegativeLimit: pu.NegativeLimit})
	}
	tx.EnsureAccount(store.Account{Code: DepositCode(number), Kind: store.KindDeposit, Currency: p.Currency,
		Card: number, Constrained: true})
}

func methodOr(m string) string {
	if m == "" {
		return "cash"
	}
	return m
}

func fundingAccount(tx *ledger.Tx, method, currency string) *store.Account {
	if method == "bank_card" {
		return systemAccount(tx, AccountBank, currency)
	}
	return systemAccount(tx, AccountCash, currency)
}

func receiptNo(transfer int64) string { return fmt.Sprintf("R%010d", transfer) }

func checkMethod(m string) error {
	switch m {
	case "", "cash", "bank_card":
		return nil
	}
	return fault.E(fault.InvalidRequest, "method", fmt.Sprintf("method must be cash or bank_card, got %q", m))
}

// Issue applies for a card: the deposit is taken and the purses opened.
func (s *Service) Issue(ctx context.Context, c Call, req IssueRequest) (ledger.Outcome, error) {
	h := req.Holder
	if err := checkTexts(
		textField{"holder.name", h.Name, MaxNameLen, false},
		textField{"holder.id_type", h.IDType, MaxIDLen, false},
		textField{"holder.id_number", h.IDNumber, MaxIDLen, false},
		textField{"holder.phone", h.Phone, MaxPhoneLen, false},
		textField{"product", req.Product, MaxIDLen, false},
	); err != nil {
		return ledger.Outcome{}, err
	}
	switch {
	case strings.TrimSpace(h.Name) == "":
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "holder.name", "the holder's name is required")
	case !idTypes[h.IDType]:
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "holder.id_type",
			fmt.Sprintf("id_type must be resident_id, military_id or passport, got %q", h.IDType))
	case strings.TrimSpace(h.IDNumber) == "":
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "holder.id_number", "the ID number is required")
	}
	if req.Product == "" {
		req.Product = "standard"
	}
	p, err := s.product(req.Product)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := checkMethod(req.Method); err != nil {
		return ledger.Outcome{}, err
	}
	var hash string
	if req.PIN != "" {
		if err := pin.ValidFormat(req.PIN); err != nil {
			return ledger.Outcome{}, fault.E(fault.PINInvalidFormat, "pin", err.Error())
		}
		if hash, err = s.hasher(req.PIN); err != nil {
			return ledger.Outcome{}, fault.Wrap(fault.Internal, err)
		}
	}
	return s.submit(ctx, c, "cards.issue", "", &issueOp{req: req, p: p, pinHash: hash, prefix: s.opts.IssuerPrefix, teller: c.Operator})
}

// TopUpRequest loads money onto a purse.
type TopUpRequest struct {
	Card     string `json:"-"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Purse    string `json:"purse,omitempty"`
	Method   string `json:"method,omitempty"`
}

// TopUpResult is the receipt and the card's purses after the top-up.
type TopUpResult struct {
	Receipt Receipt     `json:"receipt"`
	Purses  []PurseView `json:"purses"`
	// DebtRepaid is how much of the top-up cleared a negative balance.
	DebtRepaid int64 `json:"debt_repaid,omitempty"`
}

type topUpOp struct {
	req    TopUpRequest
	p      catalog.Product
	teller string
}

func (o *topUpOp) Prefetch(k *ledger.Keys) {
	k.Card(o.req.Card)
	k.Account(AccountCash, AccountBank)
}

func (o *topUpOp) Apply(tx *ledger.Tx) (any, error) {
	c, err := cardInTx(tx, o.req.Card)
	if err != nil {
		return nil, err
	}
	if c.Status != store.CardActive {
		return nil, fault.E(fault.CardNotActive, "card", fmt.Sprintf("card %s is %s", c.Number, c.Status))
	}
	v := viewInTx(tx, c, o.p)
	sum, ok := ledger.CheckedAdd(v.Balance, o.req.Amount)
	if !ok {
		// Wrapped, the sum would pass the maximum-balance check below.
		return nil, fault.E(fault.InvalidAmount, "amount", fmt.Sprintf("a top-up of %d is too large: the balance would overflow", o.req.Amount))
	}
	if sum > o.p.MaxBalance {
		return nil, fault.E(fault.ExceedsMaxBalance, "amount", fmt.Sprintf(
			"the card holds %d and may hold at most %d: a top-up of %d is too much", v.Balance, o.p.MaxBalance, o.req.Amount))
	}
	purse := tx.Account(PurseCode(c.Number, o.req.Purse))
	debt := int64(0)
	if b := ledger.Balance(*purse); b < 0 {
		debt = min(-b, o.req.Amount)
	}
	id, err := tx.Post(store.Transfer{Kind: store.TransferTopUp, Currency: c.Currency, Card: c.Number, Operator: o.teller,
		Memo: methodOr(o.req.Method),
		Entries: []store.Entry{
			{Account: fundingAccount(tx, o.req.Method, c.Currency).ID, Amount: o.req.Amount},
			{Account: purse.ID, Amount: -o.req.Amount},
		}}, time.Time{})
	if err != nil {
		return nil, err
	}
	SyncDenyList(tx, c, o.p)
	after := viewInTx(tx, c, o.p)
	return &TopUpResult{
		Receipt: Receipt{Number: receiptNo(id), At: tx.Now(), Teller: o.teller, Kind: "topup", Card: c.Number,
			Purse: o.req.Purse, Method: methodOr(o.req.Method), Amount: o.req.Amount, Currency: c.Currency,
			BalanceAfter: ledger.Balance(*purse), Transfer: strconv.FormatInt(id, 10)},
		Purses:     after.Purses,
		DebtRepaid: debt,
	}, nil
}

// TopUp loads money onto a purse (cash by default). It refuses to take the
// card past its product's maximum balance.
func (s *Service) TopUp(ctx context.Context, c Call, req TopUpRequest) (ledger.Outcome, error) {
	_, p, err := s.cardProduct(ctx, req.Card, "card")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := checkAmount(req.Amount, req.Currency, p.Currency, "amount"); err != nil {
		return ledger.Outcome{}, err
	}
	if err := checkMethod(req.Method); err != nil {
		return ledger.Outcome{}, err
	}
	if req.Purse == "" {
		req.Purse = "cash"
	}
	if !hasPurse(p, req.Purse) {
		return ledger.Outcome{}, fault.E(fault.PurseNotAllowed, "purse",
			fmt.Sprintf("product %s has no purse %q", p.Code, req.Purse))
	}
	return s.submit(ctx, c, "cards.topup", req.Card, &topUpOp{req: req, p: p, teller: c.Operator})
}

func hasPurse(p catalog.Product, name string) bool {
	for _, pu := range p.Purses {
		if pu.Name == name {
			return true
		}
	}
	return false
}
