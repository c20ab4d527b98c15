package sdk

import (
	"encoding/json"
	"time"
)

// The hub's message vocabulary: the types of the messages a plugin submits
// to the hub (Hub.Submit), the payloads they carry and the bodies the hub
// answers with. Each payload struct's JSON is the schema named beside it in
// package schemas, so a plugin can build and read them without keeping
// copies of its own.
const (
	// TypeCardPayment debits a card (schemas/msg-card-payment-v1.json,
	// CardPayment); the answer body is a PaymentResult.
	TypeCardPayment = "card.payment.v1"
	// TypeCardReversal undoes one of the plugin's card payments
	// (schemas/msg-card-reversal-v1.json, CardReversal); the answer body is
	// the reversal's transfer.
	TypeCardReversal = "card.reversal.v1"
	// TypeCardHold reserves money on a card, a pre-authorisation
	// (schemas/msg-card-hold-v1.json, CardHold); its idempotency key names
	// the hold, and the answer body is a PaymentResult.
	TypeCardHold = "card.hold.v1"
	// TypeCardCapture posts one of the plugin's holds, for its amount or
	// less (schemas/msg-card-capture-v1.json, CardCapture); the answer body
	// is a HoldResult.
	TypeCardCapture = "card.capture.v1"
	// TypeCardVoid releases one of the plugin's holds
	// (schemas/msg-card-void-v1.json, CardVoid); the answer body is a
	// HoldResult.
	TypeCardVoid = "card.void.v1"
	// TypeCardBalanceInquiry asks what a card can spend, a terminal's
	// balance inquiry (schemas/msg-card-balance-inquiry-v1.json,
	// CardBalanceInquiry); the answer body is a BalanceInquiryResult. It is a
	// read: its idempotency key is optional.
	TypeCardBalanceInquiry = "card.balance_inquiry.v1"
	// TypeTransitTaps posts a validator's taps
	// (schemas/msg-transit-taps-v1.json; the taps are sdk/transit/tap.Tap).
	TypeTransitTaps = "transit.taps.v1"
	// TypeMedicalBill settles a hospital bill: the insurer's share, then
	// the card's purses, then its linked bank card
	// (schemas/msg-medical-bill-v1.json, MedicalBill); the answer body is a
	// MedicalReceipt.
	TypeMedicalBill = "medical.bill.v1"
	// TypeMedicalRefund undoes a settled bill
	// (schemas/msg-medical-refund-v1.json, MedicalRefund); the answer body
	// is a MedicalReceipt.
	TypeMedicalRefund = "medical.refund.v1"
)

// QueryCardBalance reads a card's state and balance
// (schemas/msg-card-balance-v1.json, CardBalance); the key is the card
// number.
const QueryCardBalance = "card_balance"

// QueryAnswer reads what became of one of the plugin's own writes
// (schemas/msg-answer-v1.json, Answer); the key is the idempotency key the
// plugin submitted it with. A plugin that restarted and lost track of a
// write asks before doing its partner's side again: the hub may have
// applied it, or be applying it, while the plugin was down.
const QueryAnswer = "answer"

// States of an Answer.
const (
	// AnswerNone: the hub holds nothing under the key.
	AnswerNone = "none"
	// AnswerInProgress: the write is being applied (a saga with a partner
	// is under way); ask again later.
	AnswerInProgress = "in_progress"
	// AnswerAnswered: the write was applied; Body is its answer, as
	// Submit returned it.
	AnswerAnswered = "answered"
)

// Answer answers QueryAnswer.
type Answer struct {
	Key   string          `json:"key"`
	State string          `json:"state"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// Statuses of a PaymentResult and a BalanceInquiryResult.
const (
	StatusApproved = "approved"
	StatusDeclined = "declined"
)

// CardPayment is the payload of TypeCardPayment.
type CardPayment struct {
	Card     string `json:"card"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// PIN is a city card's PIN, which the hub checks.
	PIN string `json:"pin,omitempty"`
	// Expiry (YYMM) goes with a bank card, for the acquirer, and PINBlock,
	// a bank card's PIN as an ISO 9564 format 0 block enciphered under the
	// PIN zone key, in hex. Never both PIN and PINBlock.
	Expiry   string `json:"expiry,omitempty"`
	PINBlock string `json:"pin_block,omitempty"`
}

// CardHold is the payload of TypeCardHold: a CardPayment held, not posted.
type CardHold struct {
	Card     string `json:"card"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	PIN      string `json:"pin,omitempty"`
	// ExpiresIn is how many seconds the hold lasts; 0 is the hub's default.
	ExpiresIn int64  `json:"expires_in,omitempty"`
	Expiry    string `json:"expiry,omitempty"`
	PINBlock  string `json:"pin_block,omitempty"`
}

// CardCapture is the payload of TypeCardCapture.
type CardCapture struct {
	// HoldKey is the idempotency key of the card.hold.v1 to post.
	HoldKey string `json:"hold_key"`
	// Amount, when set, posts less than the hold; Currency is the hold's.
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
}

// CardVoid is the payload of TypeCardVoid.
type CardVoid struct {
	// HoldKey is the idempotency key of the card.hold.v1 to release.
	HoldKey string `json:"hold_key"`
}

// Kinds of a CardReversal.
const (
	ReversalVoid   = "void"
	ReversalRefund = "refund"
)

// CardReversal is the payload of TypeCardReversal: a void or a refund
// (Kind), or with no kind a reversal of a payment the terminal never saw
// answered, for the whole payment or, a partial refund, for Amount.
type CardReversal struct {
	// PaymentKey is the idempotency key of the card.payment.v1 to undo.
	PaymentKey string `json:"payment_key"`
	Memo       string `json:"memo,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Amount     int64  `json:"amount,omitempty"`
}

// CardBalanceInquiry is the payload of TypeCardBalanceInquiry. A bank card
// carries its expiry and PIN block for the acquirer.
type CardBalanceInquiry struct {
	Card     string `json:"card"`
	Expiry   string `json:"expiry,omitempty"`
	PINBlock string `json:"pin_block,omitempty"`
}

// BalanceInquiryResult is the hub's answer to TypeCardBalanceInquiry: a
// city card's available balance, or a bank card's as its issuer says.
type BalanceInquiryResult struct {
	Status string `json:"status"`
	// Reason is the registry code of a decline.
	Reason string `json:"reason,omitempty"`
	// Card is the card number, masked for a bank card.
	Card    string `json:"card"`
	Balance *int64 `json:"balance,omitempty"`
}

// Leg is what one purse (or a linked bank card, "bank_card") paid of a
// payment.
type Leg struct {
	Purse  string `json:"purse"`
	Amount int64  `json:"amount"`
}

// PaymentResult is the answer body of TypeCardPayment and TypeCardHold
// (schemas/api-payment.json). A decline is an answer, not an error.
type PaymentResult struct {
	// ID is the payment's transfer or the hold; absent for a decline.
	ID       string `json:"id,omitempty"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Card     string `json:"card"`
	Channel  string `json:"channel"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Legs     []Leg  `json:"legs"`
	// Balance is the card's balance after the payment.
	Balance   *int64     `json:"balance,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	At        time.Time  `json:"at"`
}

// HoldResult is the answer body of TypeCardCapture and TypeCardVoid
// (schemas/api-hold.json).
type HoldResult struct {
	Hold     string `json:"hold"`
	Status   string `json:"status"`
	Card     string `json:"card"`
	Merchant string `json:"merchant"`
	Amount   int64  `json:"amount"`
	Captured int64  `json:"captured"`
	Currency string `json:"currency"`
	// Transfer is the posted capture; absent for a void.
	Transfer string    `json:"transfer,omitempty"`
	Legs     []Leg     `json:"legs"`
	At       time.Time `json:"at"`
}

// PurseBalance is one purse of a CardBalance.
type PurseBalance struct {
	Purse     string `json:"purse"`
	Posted    int64  `json:"posted"`
	Pending   int64  `json:"pending"`
	Available int64  `json:"available"`
}

// CardBalance answers QueryCardBalance.
type CardBalance struct {
	Card     string `json:"card"`
	Status   string `json:"status"`
	Currency string `json:"currency"`
	// Balance is the posted balance of every purse; Available is what can
	// be spent now, the balance less holds.
	Balance   int64          `json:"balance"`
	Available int64          `json:"available"`
	Purses    []PurseBalance `json:"purses,omitempty"`
}

// CardStatus answers QueryCardStatus (schemas/msg-card-status-v1.json).
type CardStatus struct {
	Card    string `json:"card"`
	Status  string `json:"status"`
	Product string `json:"product"`
}

// Kinds of a MedicalBill.
const (
	BillOutpatient = "outpatient"
	BillInpatient  = "inpatient"
	BillPharmacy   = "pharmacy"
)

// MedicalSplit is how the insurer divides a bill: the pooled fund's share,
// the personal medical account's and the cash the patient pays.
type MedicalSplit struct {
	FundPay int64 `json:"fund_pay"`
	AcctPay int64 `json:"acct_pay"`
	CashPay int64 `json:"cash_pay"`
}

// MedicalBill is the payload of TypeMedicalBill.
type MedicalBill struct {
	BillID   string `json:"bill_id"`
	Hospital string `json:"hospital"`
	Terminal string `json:"terminal,omitempty"`
	Kind     string `json:"kind"`
	Card     string `json:"card"`
	PIN      string `json:"pin,omitempty"`
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
	// Insured bills are settled with the insurer first, for the patient
	// PsnNo and the visit MdtrtID.
	Insured bool   `json:"insured"`
	PsnNo   string `json:"psn_no,omitempty"`
	MdtrtID string `json:"mdtrt_id,omitempty"`
	// Presettlement is the insurer's estimate, shown on the receipt; the
	// settlement may differ.
	Presettlement *MedicalSplit `json:"presettlement,omitempty"`
}

// MedicalRefund is the payload of TypeMedicalRefund.
type MedicalRefund struct {
	BillID   string `json:"bill_id"`
	Hospital string `json:"hospital"`
}

// Statuses of a MedicalReceipt.
const (
	BillSettled  = "settled"
	BillDeclined = "declined"
	BillRefunded = "refunded"
)

// MedicalReceipt itemises what paid a medical bill
// (schemas/msg-medical-receipt-v1.json).
type MedicalReceipt struct {
	BillID   string `json:"bill_id"`
	Hospital string `json:"hospital"`
	Status   string `json:"status"`
	// Reason is the registry code of a decline.
	Reason         string        `json:"reason,omitempty"`
	Card           string        `json:"card"`
	Total          int64         `json:"total"`
	Currency       string        `json:"currency"`
	FundPay        int64         `json:"fund_pay"`
	MedicalPurse   int64         `json:"medical_purse"`
	CashPurse      int64         `json:"cash_purse"`
	BankCard       int64         `json:"bank_card"`
	BankCardMasked string        `json:"bank_card_masked,omitempty"`
	SetlID         string        `json:"setl_id,omitempty"`
	Settlement     *MedicalSplit `json:"settlement,omitempty"`
	Presettlement  *MedicalSplit `json:"presettlement,omitempty"`
	// Payment is the bill's transfer in the ledger.
	Payment string    `json:"payment,omitempty"`
	Balance *int64    `json:"balance,omitempty"`
	At      time.Time `json:"at"`
}
