package medical

import (
	"encoding/json"

	"github.com/citycard/citycard/sdk"
)

// Message types of the plugin.
const (
	// TypeBill asks the hub to settle a hospital or pharmacy bill: the
	// insurer's share as pre-settled, the rest from the card's medical and
	// cash purses and, as a fallback, a linked bank card. Submitted under
	// the idempotency key "bill:<hospital>:<bill_id>".
	TypeBill = "medical.bill.v1"
	// TypeRefund asks the hub to refund a settled bill: {bill_id,
	// hospital}, under the key "refund:<hospital>:<bill_id>".
	TypeRefund = "medical.refund.v1"
	// TypeSettle asks the plugin to settle a visit with the insurer (2207):
	// {bill_key, psn_no, mdtrt_id, bill_id, total, currency}.
	TypeSettle = "medical.settle.v1"
	// TypeSettlement answers TypeSettle.
	TypeSettlement = "medical.settlement.v1"
	// TypeSettleReverse asks the plugin to reverse a settlement (2208):
	// {bill_key, setl_id, psn_no, mdtrt_id}.
	TypeSettleReverse = "medical.settle_reverse.v1"
	// TypeSettlementReversal answers TypeSettleReverse.
	TypeSettlementReversal = "medical.settlement_reversal.v1"
	// TypeReconcile asks for the insurer's totals of a day (3201): {date}.
	TypeReconcile = "medical.reconcile.v1"
	// TypeReconciliation answers TypeReconcile.
	TypeReconciliation = "medical.reconciliation.v1"
	// TypeStatus asks where the plugin's HTTP API for hospitals listens:
	// {}. It has no effect.
	TypeStatus = "medical.status.v1"
	// TypeState answers TypeStatus.
	TypeState = "medical.state.v1"
)

// Statuses of a settlement and of a reversal.
const (
	Settled  = "settled"
	Declined = "declined"
	Failed   = "failed"
	Reversed = "reversed"
)

// Reasons of a failed settlement or reversal.
const (
	// ReasonInsurerTimeout: the insurer did not answer twice; both
	// requests were corrected (2601), so it holds nothing live.
	ReasonInsurerTimeout = "insurer_timeout"
	// ReasonInsurerError: the insurer refused (infcode -1); Message holds
	// its err_msg.
	ReasonInsurerError = "insurer_error"
)

// schemaBase is where the plugin's own schemas live.
const schemaBase = "https://citycard.example/plugins/medical/schemas/"

// common is where money, currency, card numbers and PINs are defined once
// for the whole hub.
const common = "https://citycard.example/schemas/api-common.json#/$defs/"

// Pieces the schemas share.
const (
	billIDProp   = `"bill_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$"}`
	hospitalProp = `"hospital": {"$ref": "` + common + `entity_id", "description": "The hospital's or pharmacy's merchant id at the hub."}`
	billKeyProp  = `"bill_key": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$", "description": "The hub's name for the bill."}`
	psnNoProp    = `"psn_no": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$", "description": "The insurer's person number."}`
	mdtrtIDProp  = `"mdtrt_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$", "description": "The insurer's visit id."}`
	setlIDProp   = `"setl_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$", "description": "The insurer's settlement id."}`
	dateProp     = `"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}`
	moneyRef     = `{"$ref": "` + common + `money"}`
	splitProps   = `"fund_pay": ` + moneyRef + `, "acct_pay": ` + moneyRef + `, "cash_pay": ` + moneyRef
)

func carried(typ, schema string) sdk.MessageType {
	return sdk.MessageType{Type: typ, SchemaID: schemaBase + typ + ".json", Schema: json.RawMessage(schema)}
}

var (
	billSchema = carried(TypeBill, `{
		"type": "object",
		"required": ["bill_id", "hospital", "kind", "card", "total", "currency", "insured"],
		"properties": {
			`+billIDProp+`, `+hospitalProp+`,
			"terminal": {"$ref": "`+common+`entity_id"},
			"kind": {"enum": ["outpatient", "inpatient", "pharmacy"]},
			"card": {"$ref": "`+common+`card_number"},
			"pin": {"$ref": "`+common+`pin"},
			"total": {"$ref": "`+common+`positive_money"},
			"currency": {"$ref": "`+common+`currency"},
			"insured": {"type": "boolean"},
			`+psnNoProp+`, `+mdtrtIDProp+`,
			"presettlement": {
				"type": "object",
				"required": ["fund_pay", "acct_pay", "cash_pay"],
				"properties": {`+splitProps+`},
				"additionalProperties": false
			}
		},
		"additionalProperties": false,
		"if": {"properties": {"insured": {"const": true}}},
		"then": {"required": ["psn_no", "mdtrt_id", "presettlement"]}
	}`)
	refundSchema = carried(TypeRefund, `{
		"type": "object",
		"required": ["bill_id", "hospital"],
		"properties": {`+billIDProp+`, `+hospitalProp+`},
		"additionalProperties": false
	}`)
	settleSchema = carried(TypeSettle, `{
		"type": "object",
		"required": ["bill_key", "psn_no", "mdtrt_id", "bill_id", "total", "currency"],
		"properties": {
			`+billKeyProp+`, `+psnNoProp+`, `+mdtrtIDProp+`, `+billIDProp+`,
			"total": {"$ref": "`+common+`positive_money"},
			"currency": {"$ref": "`+common+`currency"}
		},
		"additionalProperties": false
	}`)
	settlementSchema = carried(TypeSettlement, `{
		"type": "object",
		"required": ["status", "fund_pay", "acct_pay", "cash_pay"],
		"properties": {
			"status": {"enum": ["settled", "failed"]},
			`+setlIDProp+`, `+splitProps+`,
			"reason": {"enum": ["insurer_timeout", "insurer_error"]},
			"message": {"type": "string", "description": "The insurer's err_msg, or what happened."}
		},
		"additionalProperties": false,
		"if": {"properties": {"status": {"const": "settled"}}},
		"then": {"required": ["setl_id"]},
		"else": {"required": ["reason"]}
	}`)
	settleReverseSchema = carried(TypeSettleReverse, `{
		"type": "object",
		"required": ["bill_key", "setl_id", "psn_no", "mdtrt_id"],
		"properties": {`+billKeyProp+`, `+setlIDProp+`, `+psnNoProp+`, `+mdtrtIDProp+`},
		"additionalProperties": false
	}`)
	settlementReversalSchema = carried(TypeSettlementReversal, `{
		"type": "object",
		"required": ["status"],
		"properties": {
			"status": {"enum": ["reversed", "failed"]},
			"reason": {"enum": ["insurer_timeout", "insurer_error"]},
			"message": {"type": "string"}
		},
		"additionalProperties": false,
		"if": {"properties": {"status": {"const": "failed"}}},
		"then": {"required": ["reason"]}
	}`)
	reconcileSchema = carried(TypeReconcile, `{
		"type": "object",
		"required": ["date"],
		"properties": {`+dateProp+`},
		"additionalProperties": false
	}`)
	reconciliationSchema = carried(TypeReconciliation, `{
		"type": "object",
		"required": ["date", "count", "fund_pay", "acct_pay", "cash_pay"],
		"properties": {`+dateProp+`, "count": {"type": "integer", "minimum": 0}, `+splitProps+`},
		"additionalProperties": false
	}`)
	statusSchema = carried(TypeStatus, `{"type": "object", "additionalProperties": false}`)
	stateSchema  = carried(TypeState, `{
		"type": "object",
		"required": ["listen", "insurer_url", "org_code"],
		"properties": {
			"listen": {"type": "string", "description": "host:port of the HTTP API for hospitals and pharmacies."},
			"insurer_url": {"type": "string"},
			"org_code": {"type": "string"}
		},
		"additionalProperties": false
	}`)
)

// configSchema is strict: a misspelt setting is an error, not a default.
const configSchema = `{
	"type": "object",
	"required": ["insurer_url", "org_code"],
	"properties": {
		"listen": {"type": "string", "minLength": 1, "default": "127.0.0.1:0",
			"description": "TCP address of the HTTP API hospitals and pharmacies call."},
		"insurer_url": {"type": "string", "pattern": "^https?://[^\\s]+$", "description": "Base URL of the medical insurance platform."},
		"insurer_timeout_ms": {"type": "integer", "minimum": 50, "maximum": 60000, "default": 5000,
			"description": "How long one call to the insurer may take before it counts as timed out (and a settlement is corrected)."},
		"hub_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 120000, "default": 10000,
			"description": "How long one call to the hub may take."},
		"org_code": {"type": "string", "pattern": "^[A-Za-z0-9]{1,30}$",
			"description": "The hospital's or pharmacy's code at the insurer (fixmedins_code)."}
	},
	"additionalProperties": false
}`

// Split is how a bill divides between the pooled fund, the personal
// medical account and cash, in fen.
type Split struct {
	FundPay int64 `json:"fund_pay"`
	AcctPay int64 `json:"acct_pay"`
	CashPay int64 `json:"cash_pay"`
}

// Payloads, as the plugin reads and writes them.
type (
	// BillMessage is the payload of TypeBill.
	BillMessage struct {
		BillID        string `json:"bill_id"`
		Hospital      string `json:"hospital"`
		Terminal      string `json:"terminal,omitempty"`
		Kind          string `json:"kind"`
		Card          string `json:"card"`
		PIN           string `json:"pin,omitempty"`
		Total         int64  `json:"total"`
		Currency      string `json:"currency"`
		Insured       bool   `json:"insured"`
		PsnNo         string `json:"psn_no,omitempty"`
		MdtrtID       string `json:"mdtrt_id,omitempty"`
		Presettlement *Split `json:"presettlement,omitempty"`
	}
	// RefundMessage is the payload of TypeRefund.
	RefundMessage struct {
		BillID   string `json:"bill_id"`
		Hospital string `json:"hospital"`
	}
	// SettleMessage is the payload of TypeSettle.
	SettleMessage struct {
		BillKey  string `json:"bill_key"`
		PsnNo    string `json:"psn_no"`
		MdtrtID  string `json:"mdtrt_id"`
		BillID   string `json:"bill_id"`
		Total    int64  `json:"total"`
		Currency string `json:"currency"`
	}
	// Settlement is the payload of TypeSettlement.
	Settlement struct {
		Status string `json:"status"`
		SetlID string `json:"setl_id,omitempty"`
		Split
		Reason  string `json:"reason,omitempty"`
		Message string `json:"message,omitempty"`
	}
	// SettleReverseMessage is the payload of TypeSettleReverse.
	SettleReverseMessage struct {
		BillKey string `json:"bill_key"`
		SetlID  string `json:"setl_id"`
		PsnNo   string `json:"psn_no"`
		MdtrtID string `json:"mdtrt_id"`
	}
	// SettlementReversal is the payload of TypeSettlementReversal.
	SettlementReversal struct {
		Status  string `json:"status"`
		Reason  string `json:"reason,omitempty"`
		Message string `json:"message,omitempty"`
	}
	// Reconciliation is the payload of TypeReconciliation, and the answer
	// of GET /v1/reconciliation: the insurer's live settlements of a day.
	Reconciliation struct {
		Date  string `json:"date"`
		Count int    `json:"count"`
		Split
	}
	// State is the payload of TypeState.
	State struct {
		Listen     string `json:"listen"`
		InsurerURL string `json:"insurer_url"`
		OrgCode    string `json:"org_code"`
	}
)
