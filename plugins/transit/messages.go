package transit

import (
	"encoding/json"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// Message types of the plugin.
const (
	// TypeTaps hands the hub taps to price and post
	// (schemas/msg-transit-taps-v1.json); the answer's body is
	// schemas/msg-transit-taps-result-v1.json.
	TypeTaps = "transit.taps.v1"
	// TypeDenylistChanged tells the plugin the deny list has reached
	// {version}; the plugin fetches the change at once. Delivering it twice,
	// or with a version the plugin already has, changes nothing.
	TypeDenylistChanged = "transit.denylist.changed.v1"
	// TypeDenylist answers TypeDenylistChanged with the deny list the
	// plugin now serves: {version, size}.
	TypeDenylist = "transit.denylist.v1"
	// TypeStatusQuery asks the plugin where its validator front end listens.
	TypeStatusQuery = "transit.status.query.v1"
	// TypeStatus answers TypeStatusQuery: {listen, serving, denylist_version, denylist_size}.
	TypeStatus = "transit.status.v1"
)

// Query kinds and keys of the hub's deny list.
const (
	queryDenylist = "denylist"
	sincePrefix   = "since:"
)

// maxTapsPerMessage is the most taps one TypeTaps message may carry
// (its schema's maxItems).
const maxTapsPerMessage = 1000

// schemaBase is where the plugin's own schemas live; the hub's namespace
// (schemas.BaseURL) is not ours to use.
const schemaBase = "https://citycard.example/plugins/transit/schemas/"

func carried(typ, schema string) sdk.MessageType {
	return sdk.MessageType{Type: typ, SchemaID: schemaBase + typ + ".json", Schema: json.RawMessage(schema)}
}

var (
	tapsType              = sdk.MessageType{Type: TypeTaps, SchemaID: "msg-transit-taps-v1"}
	denylistChangedSchema = carried(TypeDenylistChanged, `{
		"type": "object",
		"required": ["version"],
		"properties": {"version": {"type": "integer", "minimum": 0, "description": "The deny list's version at the hub."}},
		"additionalProperties": false
	}`)
	denylistSchema = carried(TypeDenylist, `{
		"type": "object",
		"required": ["version", "size"],
		"properties": {
			"version": {"type": "integer", "minimum": 0},
			"size": {"type": "integer", "minimum": 0}
		},
		"additionalProperties": false
	}`)
	statusQuerySchema = carried(TypeStatusQuery, `{
		"type": "object",
		"properties": {},
		"additionalProperties": false
	}`)
	statusSchema = carried(TypeStatus, `{
		"type": "object",
		"required": ["listen", "serving", "denylist_version", "denylist_size"],
		"properties": {
			"listen": {"type": "string", "description": "host:port of the validator front end."},
			"serving": {"type": "boolean", "description": "Whether the front end answers taps (it has a deny list)."},
			"denylist_version": {"type": "integer", "minimum": 0},
			"denylist_size": {"type": "integer", "minimum": 0}
		},
		"additionalProperties": false
	}`)
)

// configSchema is strict: a misspelt setting is an error, not a default.
// Every setting has a default, so an empty configuration is a working one.
const configSchema = `{
	"type": "object",
	"properties": {
		"listen": {"type": "string", "minLength": 1, "maxLength": 256, "default": "127.0.0.1:0",
			"description": "host:port the validator front end listens on; port 0 picks a free one, reported in the log and in transit.status.v1."},
		"online_deadline_ms": {"type": "integer", "minimum": 50, "maximum": 5000, "default": 300,
			"description": "How long a validator waits for an online answer unless it says otherwise (Citycard-Deadline-Ms)."},
		"batch_window_ms": {"type": "integer", "minimum": 0, "maximum": 100, "default": 2,
			"description": "How long the first online tap of a micro-batch waits for others before the batch goes to the hub."},
		"batch_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200,
			"description": "The most online taps in one transit.taps.v1 message."},
		"max_in_flight": {"type": "integer", "minimum": 1, "maximum": 64, "default": 8,
			"description": "The most online micro-batches at the hub at once; taps queue meanwhile and make the next batch larger."},
		"denylist_refresh_ms": {"type": "integer", "minimum": 1000, "maximum": 3600000, "default": 30000,
			"description": "How often the plugin asks the hub whether the deny list changed."},
		"upload_timeout_ms": {"type": "integer", "minimum": 1000, "maximum": 120000, "default": 10000,
			"description": "How long the hub may take over one offline upload."},
		"max_upload_taps": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000,
			"description": "The most taps one offline upload may carry."}
	},
	"additionalProperties": false
}`

type config struct {
	Listen            string `json:"listen"`
	OnlineDeadlineMS  int64  `json:"online_deadline_ms"`
	BatchWindowMS     int64  `json:"batch_window_ms"`
	BatchSize         int    `json:"batch_size"`
	MaxInFlight       int    `json:"max_in_flight"`
	DenylistRefreshMS int64  `json:"denylist_refresh_ms"`
	UploadTimeoutMS   int64  `json:"upload_timeout_ms"`
	MaxUploadTaps     int    `json:"max_upload_taps"`
}

// Payloads, as the plugin reads and writes them.
type (
	tapsPayload struct {
		Taps []tap.Tap `json:"taps"`
	}
	// TapResult is the hub's answer for one tap, as the validator front
	// end passes it on.
	TapResult struct {
		Device   string `json:"device"`
		Seq      int64  `json:"seq"`
		Status   string `json:"status"`
		Reason   string `json:"reason,omitempty"`
		Field    string `json:"field,omitempty"`
		Fare     *int64 `json:"fare,omitempty"`
		Balance  *int64 `json:"balance,omitempty"`
		Transfer string `json:"transfer,omitempty"`
		Denied   bool   `json:"denied,omitempty"`
	}
	// Gap is a run of sequence numbers a device has not uploaded.
	Gap struct {
		Device string `json:"device"`
		From   int64  `json:"from"`
		To     int64  `json:"to"`
	}
	tapsResult struct {
		Results         []TapResult `json:"results"`
		Gaps            []Gap       `json:"gaps,omitempty"`
		DenylistVersion int64       `json:"denylist_version"`
	}
	denylistChanged struct {
		Version int64 `json:"version"`
	}
	denylistInfo struct {
		Version int64 `json:"version"`
		Size    int   `json:"size"`
	}
	// Status is the payload of TypeStatus.
	Status struct {
		Listen          string `json:"listen"`
		Serving         bool   `json:"serving"`
		DenylistVersion int64  `json:"denylist_version"`
		DenylistSize    int    `json:"denylist_size"`
	}
	// hubDenylist is the hub's answer to the denylist query, full or
	// incremental.
	hubDenylist struct {
		Version int64    `json:"version"`
		Since   *int64   `json:"since"`
		Full    bool     `json:"full"`
		Cards   []string `json:"cards"`
		Add     []string `json:"add"`
		Remove  []string `json:"remove"`
	}
	hubDenylistVersion struct {
		Version int64 `json:"version"`
		Size    int   `json:"size"`
	}
)

// Tap statuses. The first four are the hub's; StatusRetry is the plugin's
// own, for a tap of an upload the hub did not answer: the validator keeps
// it and uploads it again.
const (
	StatusCharged   = "charged"
	StatusDeclined  = "declined"
	StatusDuplicate = "duplicate"
	StatusRefused   = "refused"
	StatusRetry     = "retry"
)
