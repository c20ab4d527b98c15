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
	PAN      string `json:"pan"`
	Expiry   string `json:"expiry"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Merchant string `json:"merchant"`
	Terminal string `json:"terminal"`
	PINBlock string `json:"pin_block,omitempty"`
	Track2   string `json:"track2,omitempty"`
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
	"required": ["pan", "expiry", "amount", "currency", "merchant", "terminal"],
	"properties": {
		"pan": {"type": "string", "pattern": "^[0-9]{13,19}$"},
		"expiry": {"type": "string", "pattern": "^[0-9]{2}(0[1-9]|1[0-2])$"},
		"amount": {"type": "integer", "minimum": 1, "maximum": 999999999999},
		"currency": {"type": "string", "enum": ["CNY", "HKD", "MOP", "USD", "EUR", "JPY"]},
		"merchant": {"type": "string", "minLength": 1, "maxLength": 15, "pattern": "^[ -~]+$",
			"description": "The card acceptor (field 42), padded with spaces to 15 characters."},
		"terminal": {"type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[ -~]+$",
			"description": "The terminal (field 41), padded with spaces to 8 characters."},
		"pin_block": {"type": "string", "pattern": "^[0-9A-Fa-f]{16}$"},
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
		"masked_pan": {"type": "string"}
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
		"state_dir": {"type": "string", "minLength": 1, "description": "where the journal of authorisations and reversals is kept"},
		"mac_algorithm": {"enum": ["x9.19", "ecb"]},
		"response_timeout_ms": {"type": "integer", "minimum": 50, "maximum": 60000},
		"echo_interval_ms": {"type": "integer", "minimum": 50, "maximum": 600000},
		"reconnect_max_ms": {"type": "integer", "minimum": 10, "maximum": 600000}
	},
	"additionalProperties": false
}`)

func descriptor() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    Name,
		Version: "1.0.0",
		Handles: []sdk.MessageType{
			{Type: TypeAuthorize, SchemaID: schemaBase + "authorize.v1.json", Schema: authorizeSchema},
			{Type: TypeReverse, SchemaID: schemaBase + "reverse.v1.json", Schema: reverseSchema},
		},
		Sends: []sdk.MessageType{
			{Type: TypeAuthorization, SchemaID: schemaBase + "authorization.v1.json", Schema: authorizationSchema},
			{Type: TypeReversal, SchemaID: schemaBase + "reversal.v1.json", Schema: reversalSchema},
		},
		ConfigSchema: configSchema,
	}
}

// currencies maps the ISO 4217 codes the schema allows to field 49.
var currencies = map[string]string{"CNY": "156", "HKD": "344", "MOP": "446", "USD": "840", "EUR": "978", "JPY": "392"}
