package utilities

import (
	"encoding/json"

	"github.com/citycard/citycard/sdk"
)

// Message types of the plugin.
const (
	// TypeBillQuery asks for an account's current bill: {biller, account}.
	TypeBillQuery = "utilities.bill.query.v1"
	// TypeBill answers TypeBillQuery with the bill.
	TypeBill = "utilities.bill.v1"
	// TypeBillPay pays a bill with a city card: {biller, account, bill_id,
	// card, amount, currency, pin?}. Its envelope needs an idempotency key.
	TypeBillPay = "utilities.bill.pay.v1"
	// TypeReceipt answers TypeBillPay, approved or declined.
	TypeReceipt = "utilities.bill.receipt.v1"
	// TypeCardPayment asks the hub to debit a card (schemas/msg-card-payment-v1.json).
	TypeCardPayment = "card.payment.v1"
	// TypeCardReversal undoes one of the plugin's card payments
	// (schemas/msg-card-reversal-v1.json).
	TypeCardReversal = "card.reversal.v1"
)

// schemaBase is where the plugin's own schemas live; the hub's namespace
// (schemas.BaseURL) is not ours to use.
const schemaBase = "https://citycard.example/plugins/utilities/schemas/"

// common is where money, currency, card numbers and PINs are defined once
// for the whole hub.
const common = "https://citycard.example/schemas/api-common.json#/$defs/"

// Pieces the schemas share.
const (
	billerProp  = `"biller": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}`
	accountProp = `"account": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,32}$"}`
	billIDProp  = `"bill_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$"}`
)

func carried(typ, schema string) sdk.MessageType {
	return sdk.MessageType{Type: typ, SchemaID: schemaBase + typ + ".json", Schema: json.RawMessage(schema)}
}

var (
	billQuerySchema = carried(TypeBillQuery, `{
		"type": "object",
		"required": ["biller", "account"],
		"properties": {`+billerProp+`, `+accountProp+`},
		"additionalProperties": false
	}`)
	billPaySchema = carried(TypeBillPay, `{
		"type": "object",
		"required": ["biller", "account", "bill_id", "card", "amount", "currency"],
		"properties": {
			`+billerProp+`, `+accountProp+`, `+billIDProp+`,
			"card": {"$ref": "`+common+`card_number"},
			"amount": {"$ref": "`+common+`positive_money"},
			"currency": {"$ref": "`+common+`currency"},
			"pin": {"$ref": "`+common+`pin"}
		},
		"additionalProperties": false
	}`)
	billSchema = carried(TypeBill, `{
		"type": "object",
		"required": ["biller", "name", "account", "bill_id", "period", "due_date", "amount", "outstanding", "currency", "status", "partial_allowed", "overpayment_allowed"],
		"properties": {
			`+billerProp+`, `+accountProp+`, `+billIDProp+`,
			"name": {"type": "string"},
			"period": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
			"due_date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
			"amount": {"$ref": "`+common+`money"},
			"outstanding": {"$ref": "`+common+`signed_money", "description": "What is still owed; negative is credit."},
			"currency": {"$ref": "`+common+`currency"},
			"status": {"enum": ["unpaid", "partially_paid", "paid", "credit"]},
			"partial_allowed": {"type": "boolean"},
			"overpayment_allowed": {"type": "boolean"}
		},
		"additionalProperties": false
	}`)
	receiptSchema = carried(TypeReceipt, `{
		"type": "object",
		"required": ["status", "biller", "account", "bill_id", "amount", "currency"],
		"properties": {
			"status": {"enum": ["approved", "declined"]},
			"reason": {"type": "string", "description": "The hub's decline code."},
			`+billerProp+`, `+accountProp+`, `+billIDProp+`,
			"amount": {"$ref": "`+common+`positive_money"},
			"currency": {"$ref": "`+common+`currency"},
			"payment": {"$ref": "`+common+`numeric_id", "description": "The hub's transfer id of the card payment."},
			"balance": {"$ref": "`+common+`signed_money", "description": "What the card holds after the payment."},
			"biller_receipt": {"type": "string", "minLength": 1, "description": "The biller's own id of the payment."},
			"outstanding": {"$ref": "`+common+`signed_money", "description": "What the bill still owes after the payment."},
			"settlement_date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "The biller's day file that lists the payment."}
		},
		"additionalProperties": false,
		"if": {"properties": {"status": {"const": "approved"}}},
		"then": {"required": ["payment", "biller_receipt"]},
		"else": {"required": ["reason"]}
	}`)
)

// configSchema is strict: a misspelt setting is an error, not a default.
const configSchema = `{
	"type": "object",
	"required": ["biller_url", "billers"],
	"properties": {
		"biller_url": {"type": "string", "pattern": "^https?://[^\\s]+$", "description": "Base URL of the billers' host."},
		"billers": {
			"type": "object",
			"description": "The billers this plugin pays, by the billers' host's code, each with the hub merchant paid on its behalf.",
			"minProperties": 1,
			"propertyNames": {"pattern": "^[a-z][a-z0-9-]{0,31}$"},
			"additionalProperties": {
				"type": "object",
				"required": ["merchant"],
				"properties": {"merchant": {"$ref": "` + common + `entity_id"}},
				"additionalProperties": false
			}
		},
		"request_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 60000, "default": 5000,
			"description": "How long one call to the billers' host may take."}
	},
	"additionalProperties": false
}`

// Payloads, as the plugin reads and writes them.
type (
	billQuery struct {
		Biller  string `json:"biller"`
		Account string `json:"account"`
	}
	billPay struct {
		Biller   string `json:"biller"`
		Account  string `json:"account"`
		BillID   string `json:"bill_id"`
		Card     string `json:"card"`
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
		PIN      string `json:"pin,omitempty"`
	}
	cardPayment struct {
		Card     string `json:"card"`
		Merchant string `json:"merchant"`
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
		PIN      string `json:"pin,omitempty"`
	}
	cardReversal struct {
		PaymentKey string `json:"payment_key"`
		Memo       string `json:"memo,omitempty"`
	}
	// hubPayment is the part of the hub's answer to card.payment.v1
	// (schemas/api-payment.json) a receipt needs.
	hubPayment struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Balance *int64 `json:"balance"`
	}
	// Receipt is the payload of TypeReceipt.
	Receipt struct {
		Status         string `json:"status"`
		Reason         string `json:"reason,omitempty"`
		Biller         string `json:"biller"`
		Account        string `json:"account"`
		BillID         string `json:"bill_id"`
		Amount         int64  `json:"amount"`
		Currency       string `json:"currency"`
		Payment        string `json:"payment,omitempty"`
		Balance        *int64 `json:"balance,omitempty"`
		BillerReceipt  string `json:"biller_receipt,omitempty"`
		Outstanding    *int64 `json:"outstanding,omitempty"`
		SettlementDate string `json:"settlement_date,omitempty"`
	}
)

// Statuses of a card payment and of a Receipt.
const (
	Approved = "approved"
	Declined = "declined"
)
