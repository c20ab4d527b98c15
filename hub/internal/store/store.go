// Package store is the hub's system of record. It is the only package that
// speaks SQL; the drivers live in store/sqlite and store/postgres and both
// pass the same suite in store/storetest. Their reads are written once, in
// store/internal/reads, with a dialect for what the two databases do
// differently; each driver keeps its own writes and commit path.
//
// Store is the union of interfaces by concern (LedgerStore, AdminStore,
// TransitStore, BusStore, SagaStore, VerifyStore): a package that needs
// only one asks for that one.
//
// The ledger engine is the single writer of financial state: it reads what it
// needs with the Load* methods and writes everything a group of requests
// changed with one CommitBatch call, in one database transaction.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned by the Get* methods when the row does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a unique key (an operator name, a merchant id,
// a terminal id, a product code) already exists.
var ErrConflict = errors.New("store: already exists")

// ErrBadValue is returned when a write carries a value the store cannot
// hold (a NUL byte or invalid UTF-8 in text, a number out of a column's
// range, a check the schema makes). It belongs to the row that carries it,
// not to the connection or the database: the writer may retry the rest of
// a batch without that row.
var ErrBadValue = errors.New("store: value refused")

// Account kinds in the chart of accounts.
const (
	KindPurse    = "purse"      // a holder's purse (liability, credit-normal)
	KindDeposit  = "deposit"    // a card deposit held (liability, credit-normal)
	KindMerchant = "merchant"   // money owed to a merchant (liability, credit-normal)
	KindCash     = "cash"       // cash held at outlets (asset, debit-normal)
	KindBank     = "bank"       // receivable from card acquirers, bank settlement (asset, debit-normal)
	KindIncome   = "income"     // fee income, forfeited deposits (income, credit-normal)
	KindSuspense = "suspense"   // unclaimed balances awaiting a decision (liability, credit-normal)
	KindSettle   = "settlement" // the central settlement account (asset, debit-normal)
)

// Account is one ledger account with its running totals. Entries carry
// signed amounts: positive debits, negative credits.
type Account struct {
	ID       int64
	Code     string // unique, e.g. "purse:3100010000000013:cash", "merchant:M001", "cash:outlets"
	Kind     string
	Currency string
	Card     string // card number for purse and deposit accounts
	Purse    string // purse name for purse accounts
	// Constrained accounts may never have available balance (credits posted
	// minus debits posted minus debits pending) below -NegativeLimit.
	Constrained   bool
	NegativeLimit int64

	DebitsPosted   int64
	CreditsPosted  int64
	DebitsPending  int64
	CreditsPending int64
	CreatedAt      time.Time
}

// Entry is one leg of a transfer. Amount > 0 debits the account, < 0 credits it.
type Entry struct {
	Account int64
	Amount  int64
}

// Transfer kinds.
const (
	TransferIssue    = "issue"    // card deposit taken
	TransferTopUp    = "topup"    // money loaded onto a purse
	TransferPayment  = "payment"  // a purchase
	TransferHold     = "hold"     // a pending transfer (pre-authorisation)
	TransferCapture  = "capture"  // a hold posted
	TransferReversal = "reversal" // an earlier transfer undone
	TransferReplace  = "replace"  // balances moved to a replacement card
	TransferCancel   = "cancel"   // deposit and balances refunded on cancel
	TransferAdjust   = "adjust"   // a manual correction by finance
	TransferRefund   = "refund"   // part of a bank card's payment refunded at the bank
)

// Transfer is an immutable, balanced set of entries. Corrections are new
// transfers that point at the original with Ref.
type Transfer struct {
	ID       int64
	Batch    int64 // the committed batch that holds it
	Kind     string
	Currency string
	Card     string
	Pending  bool  // a hold: its entries move pending, not posted, totals
	Ref      int64 // the transfer this one reverses or captures (0 for none)
	Amount   int64 // the headline amount (sum of debits)
	Channel  string
	Merchant string
	Terminal string
	Operator string
	Memo     string
	At       time.Time
	Entries  []Entry
}

// Hold states.
const (
	HoldPending  = "pending"
	HoldCaptured = "captured"
	HoldVoided   = "voided"
	HoldExpired  = "expired"
)

// Hold is the state of a pre-authorisation. Its ID is the ID of the pending
// transfer that carries its entries.
type Hold struct {
	ID        int64
	Card      string
	Merchant  string
	Amount    int64
	Currency  string
	Captured  int64
	Status    string
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// Card states.
const (
	CardActive   = "active"
	CardLost     = "lost"     // reported lost: frozen, payments decline
	CardFrozen   = "frozen"   // frozen by risk
	CardReplaced = "replaced" // balances moved to ReplacedBy
	CardClosed   = "closed"   // cancelled, deposit refunded
)

// Card is a citizen card and its holder.
type Card struct {
	Number     string
	Product    string
	Status     string
	HolderName string
	IDType     string
	IDNumber   string
	Phone      string
	PinHash    string // slow salted hash; empty when no PIN is set
	PinTries   int    // consecutive wrong PINs
	Deposit    int64
	Currency   string
	ReplacedBy string
	Replaces   string
	IssuedAt   time.Time
	UpdatedAt  time.Time
}

// IdemKey names an idempotency record: a key is unique per operator.
type IdemKey struct {
	Operator string
	Key      string
}

// IdemRecord remembers the answer to a write so that a retry returns it.
type IdemRecord struct {
	IdemKey
	RequestHash string // hex sha256 of method, path and body
	Status      int    // HTTP status of the first answer
	Response    []byte // JSON of the first answer's result
	At          time.Time
}

// AuditEntry is one operator action. The audit log is append-only: the
// drivers refuse UPDATE and DELETE on it with a trigger.
type AuditEntry struct {
	ID       int64
	At       time.Time
	Operator string
	Role     string
	Action   string // e.g. "cards.issue", "payments.create"
	Target   string // card number, merchant id, transfer id…
	Remote   string // client address
	Outcome  string // "ok", "declined:<reason>", "error:<code>"
	Detail   string
	// PrevHash and Hash chain the log (see AuditHash). The store sets both
	// when it inserts the entry, whatever the caller passed; both are nil on
	// rows written before the chain began.
	PrevHash []byte
	Hash     []byte
}

// auditHashDomain opens every audit hash, so an audit row's hash can never
// equal a hash of anything else the hub computes.
const auditHashDomain = "citycard audit v1\n"

// AuditHash is the hash that chains audit row e to the row before it:
// SHA-256 over the domain string "citycard audit v1\n" followed by
//
//	prev, then e.ID, e.At in microseconds since the Unix epoch, Operator,
//	Role, Action, Target, Remote, Outcome and Detail
//
// where the two numbers are 8-byte big-endian two's complement and every
// byte string (prev and each text field) is its length as an 8-byte
// big-endian integer then its bytes. The length prefixes keep field
// boundaries unambiguous ("ab","c" never hashes as "a","bc"); microseconds
// are what both drivers store. prev is nil for the first chained row.
func AuditHash(prev []byte, e *AuditEntry) []byte {
	h := sha256.New()
	var n [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	h.Write([]byte(auditHashDomain))
	num(uint64(len(prev)))
	h.Write(prev)
	num(uint64(e.ID))
	num(uint64(e.At.UnixMicro()))
	for _, f := range [...]string{e.Operator, e.Role, e.Action, e.Target, e.Remote, e.Outcome, e.Detail} {
		num(uint64(len(f)))
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// ChainAudit returns copies of es as the next rows of an audit log whose
// last row is lastID with hash lastHash (nil before the first chained row):
// consecutive IDs from lastID+1, At in UTC truncated to the microseconds the
// drivers keep, and PrevHash and Hash set. Drivers call it in the
// transaction that inserts the rows, holding the log's head locked.
func ChainAudit(lastID int64, lastHash []byte, es []AuditEntry) []AuditEntry {
	out := make([]AuditEntry, len(es))
	prev := lastHash
	for i, e := range es {
		e.ID = lastID + int64(i) + 1
		e.At = e.At.Truncate(time.Microsecond).UTC()
		e.PrevHash = prev
		e.Hash = AuditHash(prev, &e)
		prev = e.Hash
		out[i] = e
	}
	return out
}

// Head is where the ledger stands: the engine resumes from it at start.
type Head struct {
	LastBatch    int64
	LastHash     []byte // hash of the last committed batch (nil before the first)
	LastTransfer int64
	LastAccount  int64
	CardSerial   int64 // highest card serial issued
	// LastAudit is the id of the last audit row and AuditHash its hash, as
	// the store's audit head records them; AuditHash is nil before the
	// first chained row.
	LastAudit   int64
	AuditHash   []byte
	DenyVersion int64 // highest DenyChange version, 0 before the first
}

// BatchRecord is one committed batch in the hash chain.
type BatchRecord struct {
	Seq       int64
	PrevHash  []byte
	Hash      []byte
	Transfers int
	At        time.Time
}

// Batch is everything one group commit writes, in one transaction.
type Batch struct {
	Record      BatchRecord
	NewAccounts []Account
	// Accounts carries the new totals of every account the batch touched
	// (each account once, however many transfers touched it).
	Accounts    []Account
	Transfers   []Transfer
	NewCards    []Card
	Cards       []Card // cards whose status, PIN or tries changed
	Holds       []Hold // new or changed holds (upsert)
	Idempotency []IdemRecord
	Audit       []AuditEntry
	CardSerial  int64 // new highest card serial, 0 if unchanged
	// Outbox holds the messages the batch emits. A driver that has an
	// outbox writer (PostgreSQL with the hub's router on the same
	// database) writes them in the batch's own transaction, so they are
	// delivered if and only if the batch commits; other drivers ignore
	// them.
	Outbox []OutboxMessage

	// Transit. Taps are inserted: a (device, seq) already stored fails the
	// batch with ErrConflict (the engine never sends one). DenyChanges are
	// inserted and must continue the stored versions. RiderStates are
	// upserted by card. DeviceSeqs raise devices.last_seq, never lower it.
	Taps        []TapRecord
	DenyChanges []DenyChange
	RiderStates []RiderState
	DeviceSeqs  []DeviceSeq

	// SagaStates start and end sagas in the same transaction as the
	// postings of their legs. One with Create inserts a saga (version 1,
	// created at At) unless its key is taken, when it is left alone; any
	// other sets an existing saga's state and data and moves its version
	// on, leaving alone a saga that is not stored.
	SagaStates []SagaState
}

// SagaState is a saga's new state, written with a batch.
type SagaState struct {
	Operator, Key, State string
	Kind                 string // with Create
	Create               bool
	Data                 []byte
	At                   time.Time
}

// OutboxMessage is one message a batch emits on the hub's router.
type OutboxMessage struct {
	Topic    string
	UUID     string
	Payload  []byte
	Metadata map[string]string
}

// Statement is one SQL statement with its arguments, written by a library
// the hub uses (the message router's table layout) and run by a driver.
type Statement struct {
	Query string
	Args  []any
}

// OutboxTopic is how a batch's messages of one topic are written: into
// Table (a name as PostgreSQL's to_regclass reads it), made by the
// statements Create returns when it does not exist yet, by Insert.
type OutboxTopic struct {
	Table  string
	Create func() ([]Statement, error)
	Insert []Statement
}

// OutboxEncoder turns a batch's outbox messages into the statements that
// publish them on the router; the driver runs them in the batch's own
// transaction. ctx is the commit's.
type OutboxEncoder func(ctx context.Context, msgs []OutboxMessage) ([]OutboxTopic, error)

// SharedDatabase is a store whose database the message bus may share, and
// the one place where it does: the router keeps its tables (watermill-sql)
// in the store's database through Pool, and the ledger's outbox messages
// are written in each batch's own transaction. The PostgreSQL driver
// implements it; SQLite, whose database one process owns, does not. Ask
// for it with a type assertion on this interface, never on a driver.
type SharedDatabase interface {
	// Pool is the store's connection pool, its connections on the store's
	// schema, for the router's watermill-sql adapter.
	Pool() *pgxpool.Pool
	// SetOutbox makes CommitBatch write each batch's Outbox with the
	// statements enc returns, in the batch's transaction: a batch whose
	// outbox fails is not committed. Call it before the ledger writer
	// starts; nil stops writing the outbox.
	SetOutbox(enc OutboxEncoder)
}

// Check refuses a batch that lists an account or a card twice: the totals
// and states it carries are absolute, so two versions of one row mean the
// engine lost track, and which one should win is unknowable. Every driver
// calls it before writing.
func (b *Batch) Check() error {
	seen := make(map[int64]bool, len(b.Accounts))
	for _, a := range b.Accounts {
		if seen[a.ID] {
			return fmt.Errorf("account %d listed twice", a.ID)
		}
		seen[a.ID] = true
	}
	cards := make(map[string]bool, len(b.Cards))
	for _, c := range b.Cards {
		if cards[c.Number] {
			return fmt.Errorf("card %s listed twice", c.Number)
		}
		cards[c.Number] = true
	}
	taps := make(map[TapKey]bool, len(b.Taps))
	for _, t := range b.Taps {
		k := TapKey{Device: t.Device, Seq: t.Seq}
		if taps[k] {
			return fmt.Errorf("tap %s/%d listed twice", t.Device, t.Seq)
		}
		taps[k] = true
	}
	riders := make(map[string]bool, len(b.RiderStates))
	for _, r := range b.RiderStates {
		if riders[r.Card] {
			return fmt.Errorf("rider state of card %s listed twice", r.Card)
		}
		riders[r.Card] = true
	}
	for i := 1; i < len(b.DenyChanges); i++ {
		if prev, v := b.DenyChanges[i-1].Version, b.DenyChanges[i].Version; v != prev+1 {
			return fmt.Errorf("deny change version %d follows %d, want %d", v, prev, prev+1)
		}
	}
	if len(b.DenyChanges) > 0 && b.DenyChanges[0].Version < 1 {
		return fmt.Errorf("deny change version %d, want 1 or more", b.DenyChanges[0].Version)
	}
	// Entry positions are a smallint in PostgreSQL; both drivers take the
	// same batches.
	for i := range b.Transfers {
		if len(b.Transfers[i].Entries) > math.MaxInt16 {
			return fmt.Errorf("transfer %d: %d entries is too many", b.Transfers[i].ID, len(b.Transfers[i].Entries))
		}
	}
	return b.checkText()
}

// checkText refuses text PostgreSQL cannot store (a NUL byte, invalid
// UTF-8), so that SQLite, which would store it, refuses it alike and the
// two drivers hold the same data. The error wraps ErrBadValue and names the
// row and field. It runs on every commit: nothing is formatted or
// allocated unless a value is refused.
func (b *Batch) checkText() error {
	for _, c := range [][]Card{b.NewCards, b.Cards} {
		for i := range c {
			c := &c[i]
			if err := textFields("card", c.Number, 0, "number", c.Number, "product", c.Product, "status", c.Status,
				"holder name", c.HolderName, "id type", c.IDType, "id number", c.IDNumber, "phone", c.Phone,
				"currency", c.Currency, "replaced by", c.ReplacedBy, "replaces", c.Replaces); err != nil {
				return err
			}
		}
	}
	for _, as := range [][]Account{b.NewAccounts, b.Accounts} {
		for i := range as {
			a := &as[i]
			if err := textFields("account", "", a.ID, "code", a.Code, "kind", a.Kind,
				"currency", a.Currency, "card", a.Card, "purse", a.Purse); err != nil {
				return err
			}
		}
	}
	for i := range b.Transfers {
		t := &b.Transfers[i]
		if err := textFields("transfer", "", t.ID, "kind", t.Kind, "currency", t.Currency, "card", t.Card,
			"channel", t.Channel, "merchant", t.Merchant, "terminal", t.Terminal, "operator", t.Operator,
			"memo", t.Memo); err != nil {
			return err
		}
	}
	for i := range b.Holds {
		h := &b.Holds[i]
		if err := textFields("hold", "", h.ID, "card", h.Card, "merchant", h.Merchant,
			"currency", h.Currency, "status", h.Status); err != nil {
			return err
		}
	}
	for i := range b.Idempotency {
		r := &b.Idempotency[i]
		if err := textFields("idempotency key", "", 0, "operator", r.Operator, "key", r.Key, "request hash", r.RequestHash); err != nil {
			return err
		}
	}
	for i := range b.Audit {
		a := &b.Audit[i]
		if err := textFields("audit entry", "", 0, "operator", a.Operator, "role", a.Role, "action", a.Action,
			"target", a.Target, "remote", a.Remote, "outcome", a.Outcome, "detail", a.Detail); err != nil {
			return err
		}
	}
	for i := range b.SagaStates {
		s := &b.SagaStates[i]
		if err := textFields("saga", s.Key, 0, "operator", s.Operator, "key", s.Key, "state", s.State, "kind", s.Kind); err != nil {
			return err
		}
	}
	for i := range b.Taps {
		t := &b.Taps[i]
		if err := textFields("tap", t.Device, t.Seq, "device", t.Device, "card", t.Card,
			"kind", t.Kind, "route", t.Route, "stop", t.Stop, "status", t.Status, "reason", t.Reason); err != nil {
			return err
		}
	}
	for i := range b.DenyChanges {
		d := &b.DenyChanges[i]
		if err := textFields("deny change", "", d.Version, "card", d.Card, "reason", d.Reason); err != nil {
			return err
		}
	}
	return nil
}

// textFields checks name/value pairs of one row (kind, named by key or
// num) for text a store cannot hold; the row's label is made only for an
// error.
func textFields(kind, key string, num int64, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		v := fields[i+1]
		why := ""
		switch {
		case strings.IndexByte(v, 0) >= 0:
			why = "holds a NUL byte"
		case !utf8.ValidString(v):
			why = "is not valid UTF-8"
		default:
			continue
		}
		row := kind
		switch {
		case key != "" && num != 0:
			row = fmt.Sprintf("%s %s/%d", kind, key, num)
		case key != "":
			row = kind + " " + key
		case num != 0:
			row = fmt.Sprintf("%s %d", kind, num)
		}
		return fmt.Errorf("%w: %s: %s %s", ErrBadValue, row, fields[i], why)
	}
	return nil
}

// Device states.
const (
	DeviceActive  = "active"
	DeviceRetired = "retired"
)

// Device is a transit validator registered with the hub.
type Device struct {
	ID        string // e.g. "BUS-0001"
	Operator  string // merchant id credited with its fares
	Mode      string // "bus" | "metro" | ...
	Route     string // its default route, may be ""
	Key       []byte // 32-byte MAC key (secret: never logged or listed)
	Status    string // DeviceActive | DeviceRetired
	LastSeq   int64  // highest tap seq posted from it
	CreatedAt time.Time
}

// CheckDevice refuses a device the drivers must not store: no id, no key,
// or an unknown status. An empty status becomes DeviceActive. Every driver
// calls it before AddDevice writes.
func CheckDevice(d *Device) error {
	if d.ID == "" {
		return errors.New("device id is empty")
	}
	if len(d.Key) == 0 {
		return errors.New("device key is empty")
	}
	if d.Status == "" {
		d.Status = DeviceActive
	}
	return CheckDeviceStatus(d.Status)
}

// CheckDeviceStatus refuses a status other than DeviceActive and
// DeviceRetired.
func CheckDeviceStatus(status string) error {
	if status != DeviceActive && status != DeviceRetired {
		return fmt.Errorf("device status %q, want %q or %q", status, DeviceActive, DeviceRetired)
	}
	return nil
}

// TapKey names one tap.
type TapKey struct {
	Device string
	Seq    int64
}

// Tap statuses.
const (
	TapCharged  = "charged"
	TapDeclined = "declined"
	TapRefused  = "refused"
)

// TapRecord is a tap as posted (or declined/refused) by the hub, kept so a
// resend gets the same answer and so gaps and history can be shown.
type TapRecord struct {
	Device   string
	Seq      int64
	Card     string
	At       time.Time
	Kind     string
	Route    string
	Stop     string
	Offline  bool
	Status   string // TapCharged | TapDeclined | TapRefused
	Reason   string // error code for declined/refused
	Fare     int64  // minor units, 0 when not charged
	Balance  int64  // the card's transit purse after it
	Transfer int64  // ledger transfer id that posted it, 0 for none
	Batch    int64  // ledger batch seq
}

// DenyChange is one change of the transit deny list. Versions are 1, 2, 3…
// with no gaps; the engine assigns them in commit order.
type DenyChange struct {
	Version int64
	Card    string
	Add     bool // true puts the card on the list, false takes it off
	Reason  string
	At      time.Time
}

// RiderState is the fare engine's per-card state (opaque bytes, e.g. JSON).
type RiderState struct {
	Card      string
	State     []byte
	UpdatedAt time.Time
}

// DeviceSeq raises a device's LastSeq to at least LastSeq.
type DeviceSeq struct {
	Device  string
	LastSeq int64
}

// MergeDeviceSeqs keeps the highest LastSeq of each device, in first-seen
// order, so that a driver updates each device once.
func MergeDeviceSeqs(seqs []DeviceSeq) []DeviceSeq {
	if len(seqs) < 2 {
		return seqs
	}
	at := make(map[string]int, len(seqs))
	out := make([]DeviceSeq, 0, len(seqs))
	for _, d := range seqs {
		if i, ok := at[d.Device]; ok {
			out[i].LastSeq = max(out[i].LastSeq, d.LastSeq)
			continue
		}
		at[d.Device] = len(out)
		out = append(out, d)
	}
	return out
}

// Operator is a person or system that calls the API.
type Operator struct {
	ID        string
	Name      string
	Role      string
	TokenHash string // hex sha256 of the bearer token
	Disabled  bool
	CreatedAt time.Time
}

// Merchant accepts card payments.
type Merchant struct {
	ID                string
	Name              string
	MCC               string
	FeeRateBps        int64
	SettlementAccount string
	CreatedAt         time.Time
}

// Terminal belongs to one merchant.
type Terminal struct {
	ID        string
	Merchant  string
	CreatedAt time.Time
}

// Product is a card product, stored as its JSON definition.
type Product struct {
	Code       string
	Definition []byte
	CreatedAt  time.Time
}

// TrialLine is one account's totals in the trial balance.
type TrialLine struct {
	Code    string
	Kind    string
	Debits  int64
	Credits int64
}

// DeadLetter is a bus message whose handler failed for good, kept for
// operators to look into and replay. The bus's dead letter store is built on
// it; the message bus itself lives above the store.
type DeadLetter struct {
	ID          int64  // assigned by the store, increasing in the order letters are put
	Handler     string // the handler that failed on the message
	Topic       string // where the message was published
	MessageUUID string
	Payload     []byte            // as published; empty reads back nil
	Metadata    map[string]string // as published; empty reads back nil
	Reason      string            // the handler's final error
	Code        string            // the final error's registry code, "" if it had none
	Attempts    int               // attempts made, 0 when not recorded
	FailedAt    time.Time         // when the handler gave up
	ReplayedAt  *time.Time        // the last replay, nil until the first
	Replays     int               // how many times the letter was replayed
}

// Check refuses a letter the drivers could not store alike: PostgreSQL text
// cannot hold a NUL byte, so SQLite must not take one either. Every driver
// calls it before writing.
func (l *DeadLetter) Check() error {
	for _, f := range []struct{ name, v string }{
		{"handler", l.Handler}, {"topic", l.Topic}, {"message uuid", l.MessageUUID},
		{"reason", l.Reason}, {"code", l.Code},
	} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("dead letter %s holds a NUL byte", f.name)
		}
	}
	if l.Attempts < 0 {
		return fmt.Errorf("dead letter attempts is %d, want 0 or more", l.Attempts)
	}
	return nil
}

// EncodeMetadata is a letter's metadata as the drivers store it: a JSON
// object, "{}" when there is none.
func EncodeMetadata(md map[string]string) (string, error) {
	if len(md) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(md)
	return string(b), err
}

// DecodeMetadata reads back what EncodeMetadata stored; an empty object is
// nil.
func DecodeMetadata(s string) (map[string]string, error) {
	var md map[string]string
	if err := json.Unmarshal([]byte(s), &md); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if len(md) == 0 {
		return nil, nil
	}
	return md, nil
}

// DeadLetterPage selects a page of dead letters, ordered by ID.
type DeadLetterPage struct {
	// Cursor is the ID of the last letter of the previous page, 0 for the
	// first page. Oldest first, the page holds IDs above it; newest first,
	// IDs below it.
	Cursor int64
	// Limit bounds the page; zero or less means no limit.
	Limit int
	// NewestFirst lists in decreasing ID order.
	NewestFirst bool
}

// DedupClaim asks for a key of the message bus's de-duplication: while
// claimed or completed, nobody else may claim it, and a key nobody
// completes or releases lapses at Until.
type DedupClaim struct {
	Key    string    // the bus's key, scoped by handler
	Holder string    // who claims it: only the holder may release it
	At     time.Time // now, by the claimer's clock
	Until  time.Time // when the claim lapses, after At
}

// CheckDedup refuses what no caller means: an empty key, or a claim or
// completion that lapses before it is made. Every driver calls it before
// claiming or completing a key.
func CheckDedup(key string, at, until time.Time) error {
	if key == "" {
		return errors.New("empty key")
	}
	if !until.After(at) {
		return fmt.Errorf("key %q: lapses at %s, not after %s", key, until.Format(time.RFC3339Nano),
			at.Format(time.RFC3339Nano))
	}
	return nil
}

// Store is implemented by each driver: the union of the stores by concern
// below, so that a package that needs only one of them can ask for only
// that one.
type Store interface {
	// Driver names the driver: "sqlite" or "postgres".
	Driver() string
	Close() error

	LedgerStore
	AdminStore
	TransitStore
	BusStore
	SagaStore
	VerifyStore
}

// LedgerStore is the ledger's storage: the engine's head, group commit and
// loads, and the reads of cards, accounts, transfers and holds.
type LedgerStore interface {
	// Head reads where the ledger stands.
	Head(ctx context.Context) (Head, error)
	// CommitBatch writes a batch atomically; on error nothing of it is written.
	CommitBatch(ctx context.Context, b *Batch) error

	// Loads for the engine; missing keys are simply absent from the result.
	LoadAccounts(ctx context.Context, codes []string) ([]Account, error)
	LoadCards(ctx context.Context, numbers []string) ([]Card, error)
	LoadHolds(ctx context.Context, ids []int64) ([]Hold, error)
	LoadIdempotency(ctx context.Context, keys []IdemKey) ([]IdemRecord, error)
	// ExpiredHolds lists pending holds whose expiry is before t.
	ExpiredHolds(ctx context.Context, t time.Time, limit int) ([]Hold, error)

	// Reads.
	GetCard(ctx context.Context, number string) (Card, error)
	CardAccounts(ctx context.Context, number string) ([]Account, error)
	GetTransfer(ctx context.Context, id int64) (Transfer, error)
	// ReversalOf returns the id of the transfer that reverses id, or 0.
	ReversalOf(ctx context.Context, id int64) (int64, error)
	TrialBalance(ctx context.Context) ([]TrialLine, error)
	// AllAccounts streams every account (for verify).
	AllAccounts(ctx context.Context, fn func(Account) error) error
	// Batches streams committed batches in order with their transfers and
	// entries (for verify).
	Batches(ctx context.Context, fn func(BatchRecord, []Transfer) error) error
	// PendingHolds lists every hold still pending (for verify).
	PendingHolds(ctx context.Context) ([]Hold, error)
	CountRows(ctx context.Context) (map[string]int64, error)
}

// AdminStore holds operators, the audit log, merchants, terminals and
// products, all written outside the group commit.
type AdminStore interface {
	// Operators and audit.
	AddOperator(ctx context.Context, op Operator) error
	OperatorByTokenHash(ctx context.Context, hash string) (Operator, error)
	OperatorByName(ctx context.Context, name string) (Operator, error)
	SetOperatorToken(ctx context.Context, id, tokenHash string) error
	AppendAudit(ctx context.Context, e AuditEntry) error
	ListAudit(ctx context.Context, afterID int64, limit int) ([]AuditEntry, error)

	// Merchants, terminals, products.
	AddMerchant(ctx context.Context, m Merchant) error
	GetMerchant(ctx context.Context, id string) (Merchant, error)
	ListMerchants(ctx context.Context) ([]Merchant, error)
	AddTerminal(ctx context.Context, t Terminal) error
	GetTerminal(ctx context.Context, id string) (Terminal, error)
	ListTerminals(ctx context.Context, merchant string) ([]Terminal, error)
	PutProduct(ctx context.Context, p Product) error
	ListProducts(ctx context.Context) ([]Product, error)
}

// TransitStore holds transit devices, the engine's transit loads and the
// deny list. Taps, rider states and deny changes are written with batches.
type TransitStore interface {
	// Transit devices (written outside the group commit; LastSeq moves
	// with batches through Batch.DeviceSeqs).
	//
	// AddDevice inserts d; a taken id is ErrConflict.
	AddDevice(ctx context.Context, d Device) error
	// GetDevice returns one device with its key, or an error wrapping
	// ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)
	// ListDevices lists an operator's devices by id, every device when
	// operator is ""; their Key is left nil.
	ListDevices(ctx context.Context, operator string) ([]Device, error)
	// SetDeviceStatus sets a device's status, or returns an error wrapping
	// ErrNotFound.
	SetDeviceStatus(ctx context.Context, id, status string) error

	// Transit loads for the engine; missing keys are absent from the result.
	// LoadDevices includes each device's Key.
	LoadDevices(ctx context.Context, ids []string) ([]Device, error)
	LoadTaps(ctx context.Context, keys []TapKey) ([]TapRecord, error)
	LoadRiderStates(ctx context.Context, cards []string) ([]RiderState, error)

	// DenyList returns the current deny list at version: for each card whose
	// latest change is an add, that change, ordered by card.
	DenyList(ctx context.Context) (version int64, cards []DenyChange, err error)
	// DenyChangesSince returns up to limit changes with versions above
	// since, ascending; a limit of zero or less means no limit.
	DenyChangesSince(ctx context.Context, since int64, limit int) ([]DenyChange, error)
	// DeviceTaps returns up to limit of a device's taps with seq above
	// afterSeq, ascending; a limit of zero or less means no limit.
	DeviceTaps(ctx context.Context, device string, afterSeq int64, limit int) ([]TapRecord, error)
}

// BusStore is what the message bus keeps in the store: its dead letters
// and its de-duplication keys.
type BusStore interface {
	// Dead letters of the message bus. A dead letter is kept until deleted
	// by hand; only its replay is recorded afterwards.
	//
	// PutDeadLetter stores l under a new ID (l.ID, ReplayedAt and Replays
	// are ignored) and returns the ID. Dead letters arrive at least once, so
	// a letter of a Handler and MessageUUID already stored is not stored
	// again: the first one's ID is returned.
	PutDeadLetter(ctx context.Context, l DeadLetter) (int64, error)
	// ListDeadLetters returns a page of letters in ID order.
	ListDeadLetters(ctx context.Context, p DeadLetterPage) ([]DeadLetter, error)
	// GetDeadLetter returns one letter or an error wrapping ErrNotFound.
	GetDeadLetter(ctx context.Context, id int64) (DeadLetter, error)
	// MarkDeadLetterReplayed sets the letter's ReplayedAt to at and counts
	// the replay, or returns an error wrapping ErrNotFound.
	MarkDeadLetterReplayed(ctx context.Context, id int64, at time.Time) error

	// De-duplication keys of the message bus, shared by the hub nodes of one
	// database. Times come from the caller, so the store needs no clock; a
	// key is free again from its Until on.
	//
	// ClaimDedupKey claims c.Key until c.Until and reports true, when the
	// key is unknown or its earlier claim or completion lapsed by c.At. It
	// reports false when the key is claimed or completed and not lapsed.
	// Of several claimers racing for one key, exactly one gets true.
	ClaimDedupKey(ctx context.Context, c DedupClaim) (bool, error)
	// CompleteDedupKey marks key handled, taken until until (at is when),
	// whoever claimed it and even if its claim lapsed or was purged: the
	// handler's effect happened.
	CompleteDedupKey(ctx context.Context, key string, at, until time.Time) error
	// ReleaseDedupKey frees a key claimed by holder and not completed. A key
	// claimed by another holder, completed, or unknown is left as it is.
	ReleaseDedupKey(ctx context.Context, key, holder string) error
	// PurgeDedupKeys deletes the keys that lapsed by before and returns how
	// many.
	PurgeDedupKeys(ctx context.Context, before time.Time) (int64, error)
}
