// Command echo is the plugin host's test plugin: it echoes text, submits
// what it saw to the hub, writes to stderr so log forwarding can be
// checked, and can be told by its configuration to crash or hang.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(&echo{}) }

const base = "https://echo.example/schemas/"

func msgType(name, schema string) sdk.MessageType {
	return sdk.MessageType{Type: name, SchemaID: base + name + ".json", Schema: json.RawMessage(schema)}
}

const textSchema = `{"type":"object","required":["text"],"properties":{
	"text":{"type":"string"},"sleep_ms":{"type":"integer","minimum":0,"maximum":60000}},
	"additionalProperties":false}`

type config struct {
	Greeting string `json:"greeting"`
	// OnHandle is "ok", "crash" (exit mid-call) or "hang" (never answer).
	OnHandle string `json:"on_handle"`
	// Unhealthy makes every health check fail, the process staying alive.
	Unhealthy bool `json:"unhealthy"`
}

type echo struct {
	mu  sync.RWMutex
	cfg config
	hub sdk.Hub
}

func (*echo) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "echo",
		Version: "0.0.1",
		Handles: []sdk.MessageType{msgType("echo.say.v1", textSchema)},
		Sends: []sdk.MessageType{
			msgType("echo.said.v1", textSchema),
			msgType("echo.seen.v1", textSchema),
		},
		ConfigSchema: json.RawMessage(`{"type":"object","required":["greeting"],"properties":{
			"greeting":{"type":"string","minLength":1},
			"on_handle":{"enum":["ok","crash","hang"]},
			"unhealthy":{"type":"boolean"}},
			"additionalProperties":false}`),
	}
}

func (e *echo) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	e.mu.Lock()
	e.cfg, e.hub = c, hub
	e.mu.Unlock()
	fmt.Fprintf(os.Stderr, "echo configured greeting=%s\n", c.Greeting)
	return nil
}

func (e *echo) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	e.mu.RLock()
	cfg, hub := e.cfg, e.hub
	e.mu.RUnlock()
	var in struct {
		Text    string `json:"text"`
		SleepMS int    `json:"sleep_ms"`
	}
	if err := json.Unmarshal(m.Payload, &in); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "echo handling %s\n", in.Text)
	switch cfg.OnHandle {
	case "crash":
		os.Exit(3)
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if in.SleepMS > 0 {
		select {
		case <-time.After(time.Duration(in.SleepMS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	seen, _ := json.Marshal(map[string]any{"text": in.Text})
	if hub != nil {
		if _, err := hub.Submit(ctx, sdk.Message{Type: "echo.seen.v1", Payload: seen}); err != nil {
			return nil, err
		}
	}
	out, _ := json.Marshal(map[string]any{"text": cfg.Greeting + " " + in.Text})
	return []sdk.Message{{Type: "echo.said.v1", Payload: out}}, nil
}

func (e *echo) Health(context.Context) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.cfg.Unhealthy {
		return errors.New("echo: told to be unhealthy")
	}
	return nil
}

func (e *echo) Stop(context.Context) error {
	fmt.Fprintln(os.Stderr, "echo stopping")
	return nil
}
