package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/sdk"
)

// Plugins is what the API shows and does of the hub's plugins and message
// routing. A hub without plugins passes nil: the routes answer 404.
type Plugins interface {
	// Status lists every plugin.
	Status() []PluginView
	// Send hands m to the named plugin through the router and returns its
	// replies.
	Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error)
	// DeadLetters lists dead letters with ID greater than after, oldest
	// first, at most limit.
	DeadLetters(ctx context.Context, after int64, limit int) ([]DeadLetterView, error)
	// Replay publishes dead letter id again, to the handler that failed.
	Replay(ctx context.Context, id int64) error
	// Tokenize has the bank acquirer keep a bank card and return its token.
	Tokenize(ctx context.Context, pan, expiry string) (BankToken, error)
	// ReconcileMedical compares a day's medical settlements as the hub
	// and the insurer behind plugin count them (api-medical-reconciliation.json).
	ReconcileMedical(ctx context.Context, plugin, date string) (json.RawMessage, error)
}

// BankToken is the bank acquirer's token for a bank card.
type BankToken struct {
	Token     string `json:"token"`
	MaskedPAN string `json:"masked_pan"`
	Last4     string `json:"last4"`
}

// PluginView is one plugin as GET /v1/plugins shows it.
type PluginView struct {
	Name      string    `json:"name"`
	Version   string    `json:"version,omitempty"`
	State     string    `json:"state"`
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
	Channel   string    `json:"channel,omitempty"`
	Handles   []string  `json:"handles"`
	Sends     []string  `json:"sends"`
}

// DeadLetterView is one dead letter as GET /v1/dead-letters shows it.
type DeadLetterView struct {
	ID          int64             `json:"id"`
	Topic       string            `json:"topic"`
	Handler     string            `json:"handler"`
	Reason      string            `json:"reason"`
	MessageUUID string            `json:"message_uuid"`
	Message     json.RawMessage   `json:"message"`
	Metadata    map[string]string `json:"metadata"`
	At          time.Time         `json:"at"`
	ReplayedAt  *time.Time        `json:"replayed_at,omitempty"`
}

// PluginMessageRequest is the body of POST /v1/plugins/{name}/messages; the
// Idempotency-Key header becomes the message's idempotency key.
type PluginMessageRequest struct {
	Type     string            `json:"type"`
	Payload  json.RawMessage   `json:"payload"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// PluginMessageAnswer is the plugin's replies.
type PluginMessageAnswer struct {
	ID      string        `json:"id"`
	Replies []sdk.Message `json:"replies"`
}

func (s *server) pluginRoutes() {
	s.handle("GET /v1/plugins", "plugins.read", s.listPlugins)
	s.handle("POST /v1/plugins/{name}/messages", "plugins.send", s.sendToPlugin)
	s.handle("GET /v1/dead-letters", "deadletters.read", s.listDeadLetters)
	s.handle("POST /v1/dead-letters/{id}/replay", "deadletters.replay", s.replayDeadLetter)
	s.handle("GET /v1/medical/reconciliation", "ledger.read", s.reconcileMedical)
}

// reconcileMedical answers GET /v1/medical/reconciliation?date=YYYY-MM-DD
// [&plugin=medical].
func (s *server) reconcileMedical(x *exchange) error {
	if s.plugins == nil {
		return errNoPlugins
	}
	q := x.r.URL.Query()
	date := q.Get("date")
	if date == "" {
		return fault.E(fault.InvalidRequest, "date", "date (YYYY-MM-DD) is required")
	}
	plugin := q.Get("plugin")
	if plugin == "" {
		plugin = "medical"
	}
	body, err := s.plugins.ReconcileMedical(x.r.Context(), plugin, date)
	if err != nil {
		return fromPlugin(err)
	}
	writeRaw(x.w, http.StatusOK, body)
	return nil
}

var errNoPlugins = fault.E(fault.NotFound, "", "this hub runs no plugins")

func (s *server) listPlugins(x *exchange) error {
	if s.plugins == nil {
		writeJSON(x.w, http.StatusOK, map[string]any{"plugins": []PluginView{}})
		return nil
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"plugins": s.plugins.Status()})
	return nil
}

// sendToPlugin delivers one message to a plugin, as a hub service would,
// and answers with the plugin's replies. The message is not a ledger
// write, so the plugin itself makes a resend harmless, by the key.
func (s *server) sendToPlugin(x *exchange) error {
	if s.plugins == nil {
		return errNoPlugins
	}
	var req PluginMessageRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	if req.Type == "" {
		return fault.E(fault.InvalidRequest, "type", "type is required")
	}
	if len(req.Payload) == 0 {
		req.Payload = json.RawMessage("{}")
	}
	m := sdk.Message{ID: sdk.NewID(), Type: req.Type, CorrelationID: x.info.id, IdempotencyKey: x.key,
		Payload: req.Payload, Metadata: req.Metadata}
	name := x.r.PathValue("name")
	replies, err := s.plugins.Send(x.r.Context(), name, m)
	if err != nil {
		err = fromPlugin(err)
	}
	// A send can move money (a plugin's payment), so each one is audited
	// with its outcome. If the row cannot be written the caller is told to
	// retry: the plugin makes a resend with the same key harmless.
	detail := fmt.Sprintf("message_id=%s idempotency_key=%s replies=%d", m.ID, x.key, len(replies))
	if aerr := x.auditDetail(name+" "+req.Type, detail, err); aerr != nil && err == nil {
		return aerr
	}
	if err != nil {
		return err
	}
	if replies == nil {
		replies = []sdk.Message{}
	}
	writeJSON(x.w, http.StatusOK, PluginMessageAnswer{ID: m.ID, Replies: replies})
	return nil
}

// fromPlugin turns a plugin protocol error into the hub's, keeping its
// registry code, field and message.
func fromPlugin(err error) error {
	var se *sdk.Error
	if !errors.As(err, &se) {
		return err
	}
	return fault.E(se.Code, se.Field, se.Message)
}

func (s *server) listDeadLetters(x *exchange) error {
	if s.plugins == nil {
		writeJSON(x.w, http.StatusOK, map[string]any{"dead_letters": []DeadLetterView{}})
		return nil
	}
	after, limit, err := pageQuery(x.r.URL.Query())
	if err != nil {
		return err
	}
	ls, err := s.plugins.DeadLetters(x.r.Context(), after, limit)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err)
	}
	if ls == nil {
		ls = []DeadLetterView{}
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"dead_letters": ls})
	return nil
}

func (s *server) replayDeadLetter(x *exchange) error {
	if s.plugins == nil {
		return errNoPlugins
	}
	if err := decodeStrict(x.body, &noBody{}); err != nil {
		return err
	}
	id, err := pathID(x, "id", fault.NotFound)
	if err != nil {
		return err
	}
	err = s.plugins.Replay(x.r.Context(), id)
	// A replay runs a handler again, which can move money: audited either
	// way. Once it has run, a failed audit row is logged, not answered as a
	// failure: a retry would replay the letter twice.
	if aerr := x.audit(strconv.FormatInt(id, 10), err); aerr != nil {
		x.info.log.Error("api: audit of a dead letter replay failed", "dead_letter", id, "err", aerr)
	}
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"id": id, "replayed": true})
	return nil
}
