package unionpay

import (
	"encoding/json"

	"github.com/citycard/citycard/sdk"
)

// Name is the plugin's name.
const Name = "unionpay"

// Message types the plugin handles and replies with.
const (
	TypeAuthorize     = "unionpay.authorize.v1"
	TypeAuthorization = "unionpay.authorization.v1"
	TypeReverse       = "unionpay.reverse.v1"
	TypeReversal      = "unionpay.reversal.v1"
	TypeTokenize      = "unionpay.tokenize.v1"
	TypeToken         = "unionpay.token.v1"
	TypeComplete      = "unionpay.complete.v1"
	TypeCancel        = "unionpay.cancel.v1"
	TypeBalance       = "unionpay.balance.v1"
)

// Transactions of unionpay.authorize.v1.
const (
	TransactionPurchase = "purchase"
	TransactionPreAuth  = "preauth"
)

// Kinds of unionpay.cancel.v1.
const (
	CancelVoid          = "void"
	CancelRefund        = "refund"
	CancelPreAuthCancel = "preauth_cancel"
)

const schemaBase = "https://unionpay.citycard.example/schemas/"

// Authorization statuses.
const (
	Approved = "approved"
	Declined = "declined"
)

// Reversal statuses.
const (
	Reversed        = "reversed"
	Queued          = "queued"
	UnknownOriginal = "unknown_original"
)

// authorize is the payload of unionpay.authorize.v1.
type authorize struct {
	PAN         string `json:"pan,omitempty"`
	Token       string `json:"token,omitempty"`
	Transaction string `json:"transaction,omitempty"`
	Expiry      string `json:"expiry,omitempty"`
	Amount      int64  `json:"amount"`
	Currency    string `json:"currency"`
	Merchant    string `json:"merchant"`
	Terminal    string `json:"terminal"`
	PINBlock    string `json:"pin_block,omitempty"`
	Track2      string `json:"track2,omitempty"`
}

// Authorization is the payload of unionpay.authorization.v1: the switch's
// answer to one authorisation.
type Authorization struct {
	Status       string `json:"status"`
	ResponseCode string `json:"response_code"`
	AuthCode     string `json:"auth_code"`
	RRN          string `json:"rrn"`
	STAN         string `json:"stan"`
	MaskedPAN    string `json:"masked_pan"`
	// Balance is the card's available balance in minor units, in the
	// answer to unionpay.balance.v1 only.
	Balance *int64 `json:"balance,omitempty"`
}

// tokenize is the payload of unionpay.tokenize.v1.
type tokenize struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"`
}

// Token is the payload of unionpay.token.v1: a linked bank card.
type Token struct {
	Token     string `json:"token"`
	MaskedPAN string `json:"masked_pan"`
	Last4     string `json:"last4"`
	Expiry    string `json:"expiry"`
}

// complete is the payload of unionpay.complete.v1.
type complete struct {
	AuthorizationKey string `json:"authorization_key"`
	Amount           int64  `json:"amount"`
	Currency         string `json:"currency"`
}

// cancel is the payload of unionpay.cancel.v1.
type cancel struct {
	AuthorizationKey string `json:"authorization_key"`
	Kind             string `json:"kind"`
	Amount           int64  `json:"amount"`
	Currency         string `json:"currency"`
}

// balance is the payload of unionpay.balance.v1.
type balance struct {
	PAN      string `json:"pan,omitempty"`
	Token    string `json:"token,omitempty"`
	Expiry   string `json:"expiry,omitempty"`
	PINBlock string `json:"pin_block,omitempty"`
	Currency string `json:"currency,omitempty"`
	Merchant string `json:"merchant,omitempty"`
	Terminal string `json:"terminal,omitempty"`
}

// reverse is the payload of unionpay.reverse.v1.
type reverse struct {
	AuthorizationKey string `json:"authorization_key"`
}

// ReversalReply is the payload of unionpay.reversal.v1.
type ReversalReply struct {
	Status           string `json:"status"`
	AuthorizationKey string `json:"authorization_key"`
}

var authorizeSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["amount", "currency", "merchant", "terminal"],
	"oneOf": [
		{"required": ["pan", "expiry"], "not": {"required": ["token"]}},
		{"required": ["token"], "not": {"anyOf": [{"required": ["pan"]}, {"required": ["track2"]}]}}
	],
	"properties": {
		"pan": {"type": "string", "pattern": "^[0-9]{13,19}$"},
		"token": {"type": "string", "pattern": "^tok_[0-9a-f]{32}$", "description": "a linked card's token from unionpay.tokenize.v1, instead of pan and expiry"},
		"transaction": {"enum": ["purchase", "preauth"], "description": "purchase (0200, the default) or pre-authorisation (0100)"},
		"expiry": {"type": "string", "pattern": "^[0-9]{2}(0[1-9]|1[0-2])$"},
		"amount": {"type": "integer", "minimum": 1, "maximum": 999999999999},
		"currency": {"type": "string", "enum": ["CNY", "HKD", "MOP", "USD", "EUR", "JPY"]},
		"merchant": {"type": "string", "minLength": 1, "maxLength": 15, "pattern": "^[ -~]+$",
			"description": "The card acceptor (field 42), padded with spaces to 15 characters."},
		"terminal": {"type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[ -~]+$",
			"description": "The terminal (field 41), padded with spaces to 8 characters."},
		"pin_block": {"type": "string", "pattern": "^[0-9A-Fa-f]{16}$",
			"description": "ISO 9564 format 0 PIN block enciphered under the PIN zone key (pin_zone_key)"},
		"track2": {"type": "string", "pattern": "^[0-9]{12,19}[=D][0-9]{4,20}$"}
	},
	"additionalProperties": false
}`)

var authorizationSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["status", "response_code", "auth_code", "rrn", "stan", "masked_pan"],
	"properties": {
		"status": {"enum": ["approved", "declined"]},
		"response_code": {"type": "string", "pattern": "^[0-9A-Z]{2}$"},
		"auth_code": {"type": "string", "maxLength": 6},
		"rrn": {"type": "string", "maxLength": 12},
		"stan": {"type": "string", "pattern": "^[0-9]{6}$"},
		"masked_pan": {"type": "string"},
		"balance": {"type": "integer", "description": "available balance in minor units (unionpay.balance.v1 only)"}
	},
	"additionalProperties": false
}`)

var reverseSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["authorization_key"],
	"properties": {
		"authorization_key": {"type": "string", "minLength": 1, "maxLength": 200}
	},
	"additionalProperties": false
}`)

var reversalSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["status", "authorization_key"],
	"properties": {
		"status": {"enum": ["reversed", "queued", "unknown_original"]},
		"authorization_key": {"type": "string"}
	},
	"additionalProperties": false
}`)

var tokenizeSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["pan", "expiry"],
	"properties": {
		"pan": {"type": "string", "pattern": "^[0-9]{13,19}$"},
		"expiry": {"type": "string", "pattern": "^[0-9]{2}(0[1-9]|1[0-2])$"}
	},
	"additionalProperties": false
}`)

var tokenSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["token", "masked_pan", "last4", "expiry"],
	"properties": {
		"token": {"type": "string", "pattern": "^tok_[0-9a-f]{32}$"},
		"masked_pan": {"type": "string"},
		"last4": {"type": "string", "pattern": "^[0-9]{4}$"},
		"expiry": {"type": "string", "pattern": "^[0-9]{4}$"}
	},
	"additionalProperties": false
}`)

var completeSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["authorization_key", "amount", "currency"],
	"properties": {
		"authorization_key": {"type": "string", "minLength": 1, "maxLength": 200,
			"description": "the idempotency key of the pre-authorisation to complete"},
		"amount": {"type": "integer", "minimum": 1, "maximum": 999999999999},
		"currency": {"type": "string", "enum": ["CNY", "HKD", "MOP", "USD", "EUR", "JPY"]}
	},
	"additionalProperties": false
}`)

var cancelSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["authorization_key", "kind", "amount", "currency"],
	"properties": {
		"authorization_key": {"type": "string", "minLength": 1, "maxLength": 200,
			"description": "the idempotency key of the purchase, completion or pre-authorisation to undo"},
		"kind": {"enum": ["void", "refund", "preauth_cancel"]},
		"amount": {"type": "integer", "minimum": 1, "maximum": 999999999999},
		"currency": {"type": "string", "enum": ["CNY", "HKD", "MOP", "USD", "EUR", "JPY"]}
	},
	"additionalProperties": false
}`)

var balanceSchema = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"oneOf": [
		{"required": ["pan"], "not": {"required": ["token"]}},
		{"required": ["token"], "not": {"required": ["pan"]}}
	],
	"properties": {
		"pan": {"type": "string", "pattern": "^[0-9]{13,19}$"},
		"token": {"type": "string", "pattern": "^tok_[0-9a-f]{32}$"},
		"expiry": {"type": "string", "pattern": "^[0-9]{2}(0[1-9]|1[0-2])$"},
		"pin_block": {"type": "string", "pattern": "^[0-9A-Fa-f]{16}$"},
		"currency": {"type": "string", "enum": ["CNY", "HKD", "MOP", "USD", "EUR", "JPY"]},
		"merchant": {"type": "string", "minLength": 1, "maxLength": 15, "pattern": "^[ -~]+$"},
		"terminal": {"type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[ -~]+$"}
	},
	"additionalProperties": false
}`)

var configSchema = json.RawMessage(`{
	"type": "object",
	"required": ["switch_addr", "master_key", "acquirer_id", "link_terminal", "link_merchant", "state_dir"],
	"properties": {
		"switch_addr": {"type": "string", "minLength": 3, "description": "host:port of the UnionPay switch"},
		"master_key": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$", "description": "the link's master key (double-length, hex), under which the switch sends the working keys"},
		"master_key_check": {"type": "string", "pattern": "^[0-9A-Fa-f]{6}$", "description": "its check value, verified at start"},
		"acquirer_id": {"type": "string", "pattern": "^[0-9]{1,11}$", "description": "field 32"},
		"link_terminal": {"type": "string", "minLength": 8, "maxLength": 8, "description": "field 41 of sign-on and echo"},
		"link_merchant": {"type": "string", "minLength": 15, "maxLength": 15, "description": "field 42 of sign-on and echo"},
		"state_dir": {"type": "string", "minLength": 1, "description": "where the journal of authorisations and reversals and the token vault are kept"},
		"mac_algorithm": {"enum": ["x9.19", "ecb"], "default": "x9.19"},
		"response_timeout_ms": {"type": "integer", "minimum": 50, "maximum": 60000, "default": 10000},
		"echo_interval_ms": {"type": "integer", "minimum": 50, "maximum": 600000, "default": 60000},
		"reconnect_max_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 30000},
		"pin_zone_key": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$", "description": "the PIN zone key (double-length, hex) shared with the city's POS front end, under which pin_block arrives"},
		"pin_zone_key_check": {"type": "string", "pattern": "^[0-9A-Fa-f]{6}$", "description": "its check value, verified at start"},
		"key_store": {"type": "object", "description": "where the token vault's top key (32 bytes, 64 hex digits or base64) is: an environment variable or a file",
			"properties": {"env": {"type": "string", "minLength": 1}, "file": {"type": "string", "minLength": 1}},
			"minProperties": 1, "additionalProperties": false}
	},
	"additionalProperties": false
}`)

func descriptor() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    Name,
		Version: "1.1.0",
		Handles: []sdk.MessageType{
			{Type: TypeAuthorize, SchemaID: schemaBase + "authorize.v1.json", Schema: authorizeSchema},
			{Type: TypeReverse, SchemaID: schemaBase + "reverse.v1.json", Schema: reverseSchema},
			{Type: TypeTokenize, SchemaID: schemaBase + "tokenize.v1.json", Schema: tokenizeSchema},
			{Type: TypeComplete, SchemaID: schemaBase + "complete.v1.json", Schema: completeSchema},
			{Type: TypeCancel, SchemaID: schemaBase + "cancel.v1.json", Schema: cancelSchema},
			{Type: TypeBalance, SchemaID: schemaBase + "balance.v1.json", Schema: balanceSchema},
		},
		Sends: []sdk.MessageType{
			{Type: TypeAuthorization, SchemaID: schemaBase + "authorization.v1.json", Schema: authorizationSchema},
			{Type: TypeReversal, SchemaID: schemaBase + "reversal.v1.json", Schema: reversalSchema},
			{Type: TypeToken, SchemaID: schemaBase + "token.v1.json", Schema: tokenSchema},
		},
		ConfigSchema: configSchema,
	}
}

// currencies maps the ISO 4217 codes the schema allows to field 49.
var currencies = map[string]string{"CNY": "156", "HKD": "344", "MOP": "446", "USD": "840", "EUR": "978", "JPY": "392"}
