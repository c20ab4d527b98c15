package pos

import (
	"encoding/json"

	"github.com/citycard/citycard/sdk"
)

// Message types of the plugin.
const (
	// TypeTerminalStatus asks for one terminal's sign-on state and where
	// the plugin listens: {terminal}. It has no effect.
	TypeTerminalStatus = "pos.terminal.status.v1"
	// TypeTerminalState answers TypeTerminalStatus.
	TypeTerminalState = "pos.terminal.state.v1"
	// The hub's card messages the plugin sends, from the sdk's vocabulary:
	// the payloads are sdk.CardPayment (for holds too), sdk.CardReversal,
	// sdk.CardCapture, sdk.CardVoid and sdk.CardBalanceInquiry.
	TypeCardPayment        = sdk.TypeCardPayment
	TypeCardReversal       = sdk.TypeCardReversal
	TypeCardHold           = sdk.TypeCardHold
	TypeCardCapture        = sdk.TypeCardCapture
	TypeCardVoid           = sdk.TypeCardVoid
	TypeCardBalanceInquiry = sdk.TypeCardBalanceInquiry
	// QueryCardBalance reads a card's state and balance (sdk.CardBalance);
	// the key is the card number.
	QueryCardBalance = sdk.QueryCardBalance
)

// schemaBase is where the plugin's own schemas live.
const schemaBase = "https://citycard.example/plugins/pos/schemas/"

const terminalIDPattern = `^[0-9A-Za-z]{8}$`

func carried(typ, schema string) sdk.MessageType {
	return sdk.MessageType{Type: typ, SchemaID: schemaBase + typ + ".json", Schema: json.RawMessage(schema)}
}

var (
	terminalStatusSchema = carried(TypeTerminalStatus, `{
		"type": "object",
		"required": ["terminal"],
		"properties": {"terminal": {"type": "string", "pattern": "`+terminalIDPattern+`", "description": "The terminal id (field 41)."}},
		"additionalProperties": false
	}`)
	terminalStateSchema = carried(TypeTerminalState, `{
		"type": "object",
		"required": ["terminal", "known", "signed_on", "listen"],
		"properties": {
			"terminal": {"type": "string"},
			"known": {"type": "boolean", "description": "Whether the terminal is configured."},
			"signed_on": {"type": "boolean", "description": "Whether it holds working keys from a sign-on."},
			"signed_on_at": {"type": "string", "format": "date-time"},
			"batch": {"type": "string", "pattern": "^[0-9]{6}$", "description": "The batch it works in."},
			"mac": {"enum": ["ecb", "x919"]},
			"listen": {"type": "string", "description": "host:port of the terminals' TCP front end."}
		},
		"additionalProperties": false
	}`)
)

// The plugin's own schemas of the card messages it sends that carry more
// than the hub's schemas of the same types: a bank card's expiry and
// translated PIN block, the kind and amount of a reversal, and the bank
// card balance inquiry. The hub checks the payload against its own schema
// of the type as well.
const (
	cardCommonRef = "https://citycard.example/schemas/api-common.json#/$defs/"
	pinBlockProp  = `"pin_block": {"type": "string", "pattern": "^[0-9A-F]{16}$",
			"description": "A bank card's PIN: an ISO 9564 format 0 block enciphered under the PIN zone key shared with the bank acquirer, in hex. Never with pin."}`
	expiryProp  = `"expiry": {"type": "string", "pattern": "^[0-9]{4}$", "description": "A bank card's expiry, YYMM, as read from the card."}`
	debitSchema = `{
		"type": "object",
		"required": ["card", "merchant", "amount", "currency"],
		"properties": {
			"card": {"$ref": "` + cardCommonRef + `card_number"},
			"merchant": {"$ref": "` + cardCommonRef + `entity_id"},
			"terminal": {"$ref": "` + cardCommonRef + `entity_id"},
			"amount": {"$ref": "` + cardCommonRef + `positive_money"},
			"currency": {"$ref": "` + cardCommonRef + `currency"},
			"pin": {"$ref": "` + cardCommonRef + `pin", "description": "A city card's PIN, which the hub checks."},
			` + expiryProp + `,
			` + pinBlockProp + `
		},
		"not": {"required": ["pin", "pin_block"]},
		"additionalProperties": false
	}`
)

var (
	cardPaymentSchema  = carried(TypeCardPayment, debitSchema)
	cardHoldSchema     = sdk.MessageType{Type: TypeCardHold, SchemaID: schemaBase + TypeCardHold + ".json", Schema: json.RawMessage(debitSchema)}
	cardReversalSchema = carried(TypeCardReversal, `{
		"type": "object",
		"required": ["payment_key"],
		"properties": {
			"payment_key": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$",
				"description": "The idempotency key of the card.payment.v1 to undo."},
			"memo": {"type": "string", "maxLength": 200},
			"kind": {"enum": ["void", "refund"],
				"description": "A terminal's void (0200) or refund (0220); left out for a reversal (0400) of a payment the terminal never saw answered."},
			"amount": {"$ref": "`+cardCommonRef+`positive_money",
				"description": "A partial refund: what to credit back, less than what is left of the payment. Left out, the whole payment is undone."}
		},
		"additionalProperties": false
	}`)
	cardBalanceInquirySchema = carried(TypeCardBalanceInquiry, `{
		"type": "object",
		"required": ["card"],
		"properties": {
			"card": {"$ref": "`+cardCommonRef+`card_number"},
			`+expiryProp+`,
			`+pinBlockProp+`
		},
		"additionalProperties": false
	}`)
)

// configSchema is strict: a misspelt setting is an error, not a default.
const configSchema = `{
	"type": "object",
	"required": ["city_bins", "terminals"],
	"properties": {
		"listen": {"type": "string", "minLength": 1, "default": "127.0.0.1:0",
			"description": "TCP address the terminals connect to."},
		"city_bins": {"type": "array", "minItems": 1, "uniqueItems": true,
			"items": {"type": "string", "pattern": "^[0-9]{1,11}$"},
			"description": "Card number prefixes of the city card. Other cards are bank cards: declined 15 (no such issuer) unless bank_cards is set."},
		"bank_cards": {"type": "boolean", "default": false,
			"description": "Take bank cards for every transaction (purchase, pre-authorisation, completion, cancellation, void, refund, balance inquiry) and send them to the hub, which has its bank acquirer (plugins/unionpay) answer. A bank card's PIN block is translated to pin_zone_key; without one, a bank card with a PIN block is declined 40."},
		"city_cvk": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$",
			"description": "The city's card verification keys (CVK A and B, hex), in clear: the CVV in a city card's track 2 (the first three digits of its discretionary data) is checked with them. Prefer city_cvk_sealed."},
		"city_cvk_sealed": {"type": "string", "minLength": 1,
			"description": "The city's card verification keys sealed in the key store (base64) under the name city/cvk."},
		"pin_zone_key": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$",
			"description": "The PIN zone key (double-length DES, hex) shared with the bank acquirer plugin, in clear: a bank card's PIN block is re-enciphered under it. Prefer pin_zone_key_sealed."},
		"pin_zone_key_sealed": {"type": "string", "pattern": "^[A-Za-z0-9+/]+={0,2}$",
			"description": "The PIN zone key sealed with cardcrypto.KeyStore under the name pin/zpk, base64; opened with key_store."},
		"pin_zone_key_check": {"type": "string", "pattern": "^[0-9A-Fa-f]{6}$",
			"description": "The PIN zone key's check value (3 bytes, hex): configuration fails when the key does not have it."},
		"terminals": {
			"type": "object",
			"minProperties": 1,
			"propertyNames": {"pattern": "` + terminalIDPattern + `"},
			"additionalProperties": {
				"type": "object",
				"required": ["merchant"],
				"properties": {
					"merchant": {"$ref": "https://citycard.example/schemas/api-common.json#/$defs/entity_id",
						"description": "The hub merchant the terminal takes payments for."},
					"acceptor_id": {"type": "string", "pattern": "^[\\x20-\\x7e]{15}$",
						"description": "Field 42 as the terminal sends it; the merchant id padded with spaces to 15 characters when left out."},
					"master_key": {"type": "string", "pattern": "^([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{48})$",
						"description": "The terminal master key in hex, in clear. Prefer master_key_sealed."},
					"master_key_sealed": {"type": "string", "pattern": "^[A-Za-z0-9+/]+={0,2}$",
						"description": "The terminal master key sealed with cardcrypto.KeyStore under the name terminal/<id>/tmk, base64."},
					"mac": {"enum": ["ecb", "x919"], "default": "ecb",
						"description": "MAC algorithm: the UnionPay ECB algorithm or ANSI X9.19."}
				},
				"oneOf": [{"required": ["master_key"]}, {"required": ["master_key_sealed"]}],
				"additionalProperties": false
			}
		},
		"key_store": {
			"type": "object",
			"properties": {
				"env": {"type": "string", "minLength": 1, "description": "Environment variable holding the top key (64 hex digits or base64)."},
				"file": {"type": "string", "minLength": 1, "description": "File holding the top key."}
			},
			"minProperties": 1,
			"additionalProperties": false,
			"description": "Where the top key that opens master_key_sealed and pin_zone_key_sealed comes from."
		},
		"hub_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 120000, "default": 10000,
			"description": "How long one call to the hub may take."},
		"idle_timeout_ms": {"type": "integer", "minimum": 1000, "maximum": 3600000, "default": 120000,
			"description": "A terminal connection with no message for this long is closed."}
	},
	"additionalProperties": false
}`

// TerminalState is the payload of TypeTerminalState.
type TerminalState struct {
	Terminal   string `json:"terminal"`
	Known      bool   `json:"known"`
	SignedOn   bool   `json:"signed_on"`
	SignedOnAt string `json:"signed_on_at,omitempty"`
	Batch      string `json:"batch,omitempty"`
	MAC        string `json:"mac,omitempty"`
	Listen     string `json:"listen"`
}
