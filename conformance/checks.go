package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// check is one requirement of SPEC.md and the code that checks it.
type check struct {
	ID    string
	Level Level
	Title string
	// Needs lists the checks whose work this one builds on; it is not run
	// unless they passed (or found nothing to check).
	Needs []string
	run   func(ctx context.Context, s *session) (Status, string)
}

// Requirement is one requirement of SPEC.md as the kit checks it.
type Requirement struct {
	ID    string
	Level Level
	Title string
}

// Requirements lists what the kit checks, in the order it checks it.
func Requirements() []Requirement {
	out := make([]Requirement, len(checks))
	for i, c := range checks {
		out[i] = Requirement{ID: c.ID, Level: c.Level, Title: c.Title}
	}
	return out
}

// checks run in this order, the order of SPEC.md.
var checks = []check{
	{ID: "CC-PLUGIN-001", Level: Must, Title: "completes the go-plugin handshake on protocol v1", run: checkHandshake},
	{ID: "CC-PLUGIN-002", Level: Must, Title: "refuses a hub offering only an unknown protocol version", run: checkUnknownProtocol},
	{ID: "CC-PLUGIN-003", Level: Must, Title: "describes itself validly and consistently", Needs: []string{"CC-PLUGIN-001"}, run: checkDescriptor},
	{ID: "CC-PLUGIN-004", Level: Should, Title: "refuses messages before it is configured", Needs: []string{"CC-PLUGIN-003"}, run: checkNotConfigured},
	{ID: "CC-PLUGIN-005", Level: Should, Title: "configuration schema refuses unknown settings", Needs: []string{"CC-PLUGIN-003"}, run: checkClosedConfig},
	{ID: "CC-PLUGIN-006", Level: Must, Title: "refuses a bad configuration with config_invalid, saying what is wrong", Needs: []string{"CC-PLUGIN-003"}, run: checkBadConfig},
	{ID: "CC-PLUGIN-007", Level: Must, Title: "accepts a valid configuration", Needs: []string{"CC-PLUGIN-003"}, run: checkValidConfig},
	{ID: "CC-PLUGIN-008", Level: Should, Title: "reports itself healthy once configured", Needs: []string{"CC-PLUGIN-007"}, run: checkHealth},
	{ID: "CC-PLUGIN-009", Level: Must, Title: "handles a valid message of every type it declares", Needs: []string{"CC-PLUGIN-007"}, run: checkSamples},
	{ID: "CC-PLUGIN-010", Level: Must, Title: "every reply and submission is valid against its declared schema", Needs: []string{"CC-PLUGIN-009"}, run: checkEmitted},
	{ID: "CC-PLUGIN-011", Level: Must, Title: "refuses a payload that breaks its schema with schema_invalid and no effect", Needs: []string{"CC-PLUGIN-007"}, run: checkInvalidPayload},
	{ID: "CC-PLUGIN-012", Level: Must, Title: "refuses an unknown message type with unsupported_message_type and no effect", Needs: []string{"CC-PLUGIN-007"}, run: checkUnknownType},
	{ID: "CC-PLUGIN-013", Level: Must, Title: "a message delivered twice has one effect", Needs: []string{"CC-PLUGIN-009"}, run: checkDuplicate},
	{ID: "CC-PLUGIN-014", Level: Must, Title: "a hub that does not answer cannot make Handle hang", Needs: []string{"CC-PLUGIN-009"}, run: checkSlowHub},
	{ID: "CC-PLUGIN-015", Level: Must, Title: "a failing hub yields a retryable error", Needs: []string{"CC-PLUGIN-009"}, run: checkFailingHub},
	{ID: "CC-PLUGIN-016", Level: Must, Title: "answers many concurrent messages correctly", Needs: []string{"CC-PLUGIN-009"}, run: checkConcurrent},
	{ID: "CC-PLUGIN-017", Level: Must, Title: "survives kill -9 and a new launch without a second effect", Needs: []string{"CC-PLUGIN-009"}, run: checkRestart},
	{ID: "CC-PLUGIN-018", Level: Must, Title: "stops and exits cleanly, leaving no process behind", Needs: []string{"CC-PLUGIN-007"}, run: checkShutdown},
}

// sample is a valid message the kit delivers.
type sample struct {
	msg       sdk.Message // without id and time: each delivery fills them
	label     string      // for messages: "sample 2 (parking.quote.v1)"
	generated bool
}

// unknownVersion is a protocol version no plugin can speak.
const unknownVersion = 99

func checkHandshake(_ context.Context, s *session) (Status, string) {
	inst, err := s.launch(pluginwire.Handshake())
	if err != nil {
		return Fail, fmt.Sprintf("the hub could not launch and connect to the plugin: %v", err)
	}
	s.inst = inst
	if v := inst.pc.NegotiatedVersion(); v != sdk.ProtocolVersion {
		return Fail, fmt.Sprintf("negotiated protocol version %d, want %d", v, sdk.ProtocolVersion)
	}
	if p := inst.pc.Protocol(); p != plugin.ProtocolGRPC {
		return Fail, fmt.Sprintf("speaks go-plugin protocol %q, want grpc", p)
	}
	return Pass, fmt.Sprintf("pid %d, protocol v%d over gRPC with mutual TLS", inst.pid, sdk.ProtocolVersion)
}

func checkUnknownProtocol(_ context.Context, s *session) (Status, string) {
	hs := pluginwire.Handshake() // a copy
	hs.ProtocolVersion = unknownVersion
	start := time.Now()
	inst, err := s.launch(hs)
	took := time.Since(start)
	if err == nil {
		v := inst.pc.NegotiatedVersion()
		inst.close()
		return Fail, fmt.Sprintf("offered only protocol version %d, which does not exist, the plugin accepted it (negotiated version %d)", unknownVersion, v)
	}
	if took >= s.opts.StartTimeout {
		return Fail, fmt.Sprintf("offered only protocol version %d, the plugin neither refused nor answered within %s: %v", unknownVersion, s.opts.StartTimeout, err)
	}
	return Pass, fmt.Sprintf("refused in %s: %s", took.Round(time.Millisecond), firstLine(err.Error()))
}

func checkDescriptor(ctx context.Context, s *session) (Status, string) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.inst.rpc.Describe(cctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return Fail, fmt.Sprintf("Describe failed: %v", callError(cctx, "describe", err))
	}
	d := pluginwire.FromDescriptor(resp)
	v, err := pluginwire.NewValidator(d)
	if err != nil {
		return Fail, fmt.Sprintf("the descriptor is not valid: %v", err)
	}
	again, err := s.inst.rpc.Describe(cctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return Fail, fmt.Sprintf("Describe failed when called again: %v", callError(cctx, "describe", err))
	}
	if descriptorJSON(pluginwire.FromDescriptor(again)) != descriptorJSON(d) {
		return Fail, "Describe answered differently when called again; it must not depend on state"
	}
	s.desc, s.val = d, v
	s.hub.setValidator(v)
	s.handled = map[string]sdk.MessageType{}
	for _, mt := range d.Handles {
		s.handled[mt.Type] = mt
	}
	s.resolveSamples()
	return Pass, fmt.Sprintf("%s %s handles %d message types, sends %d", d.Name, d.Version, len(d.Handles), len(d.Sends))
}

// schemaOf returns the payload schema of a message type, carried or the hub's.
func schemaOf(mt sdk.MessageType) (json.RawMessage, error) {
	if len(mt.Schema) > 0 {
		return mt.Schema, nil
	}
	return schemas.Source(strings.TrimSuffix(path.Base(mt.SchemaID), ".json"))
}

// resolveSamples checks the file's samples against the Descriptor and
// makes a payload for each handled type that has none.
func (s *session) resolveSamples() {
	have := map[string]bool{}
	for i, fs := range s.opts.File.Samples {
		label := fmt.Sprintf("sample %d (%s)", i+1, fs.Type)
		if _, ok := s.handled[fs.Type]; !ok {
			s.problems = append(s.problems, fmt.Sprintf("%s: the plugin does not handle %s", label, fs.Type))
			continue
		}
		have[fs.Type] = true
		m := sdk.Message{Type: fs.Type, Payload: fs.Payload, IdempotencyKey: fs.IdempotencyKey, Metadata: fs.Metadata}
		if err := s.val.CheckHandled(s.message(m)); err != nil {
			s.problems = append(s.problems, fmt.Sprintf("%s breaks the plugin's schema for %s: %v", label, fs.Type, err))
			continue
		}
		s.samples = append(s.samples, sample{msg: m, label: label})
	}
	for _, mt := range s.desc.Handles {
		if have[mt.Type] {
			continue
		}
		payload, err := s.generate(mt)
		if err != nil {
			s.problems = append(s.problems, fmt.Sprintf("%s: the conformance file has no sample and %v; add one to samples", mt.Type, err))
			continue
		}
		s.samples = append(s.samples, sample{msg: sdk.Message{Type: mt.Type, Payload: payload},
			label: fmt.Sprintf("generated %s", mt.Type), generated: true})
	}
}

// generate makes a minimal payload for mt and checks it.
func (s *session) generate(mt sdk.MessageType) (json.RawMessage, error) {
	src, err := schemaOf(mt)
	if err != nil {
		return nil, err
	}
	var schema map[string]any
	if err := json.Unmarshal(src, &schema); err != nil {
		return nil, err
	}
	v, err := minimal(schema, 0)
	if err != nil {
		return nil, fmt.Errorf("the kit %w", err)
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if err := s.val.CheckHandled(s.message(sdk.Message{Type: mt.Type, Payload: payload})); err != nil {
		return nil, fmt.Errorf("the payload the kit made is not valid (%v)", err)
	}
	return payload, nil
}

// deliver hands one message to the running plugin within the call timeout.
func (s *session) deliver(ctx context.Context, m sdk.Message) ([]sdk.Message, *sdk.Error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	replies, e, _ := s.inst.handle(cctx, m)
	return replies, e
}

// submissions counts the hub calls of a phase that submitted something.
func submissions(evs []hubEvent) int {
	n := 0
	for _, e := range evs {
		if e.op != "query" {
			n++
		}
	}
	return n
}

func checkNotConfigured(ctx context.Context, s *session) (Status, string) {
	if len(s.handled) == 0 {
		return Skip, "nothing to check: the plugin handles no message types"
	}
	if len(s.samples) == 0 {
		return Error, "no valid sample to deliver: " + strings.Join(s.problems, "; ")
	}
	sm := s.samples[0]
	replies, e := s.deliver(ctx, s.message(sm.msg))
	if e == nil {
		return Fail, fmt.Sprintf("handled %s before any configuration (%d replies); it must answer not_configured", sm.label, len(replies))
	}
	if e.Code != sdk.CodeNotConfigured {
		return Fail, fmt.Sprintf("answered %s before any configuration with %v; want code %s", sm.label, e, sdk.CodeNotConfigured)
	}
	return Pass, ""
}

func checkClosedConfig(_ context.Context, s *session) (Status, string) {
	if len(s.desc.ConfigSchema) == 0 {
		return Pass, "the plugin takes no configuration"
	}
	if err := s.val.CheckConfig(s.config()); err != nil {
		return Error, fmt.Sprintf("the configuration in the conformance file is not valid against the plugin's schema: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(s.config(), &m); err != nil {
		return Error, fmt.Sprintf("the configuration in the conformance file: %v", err)
	}
	m[unknownProperty] = true
	doc, _ := json.Marshal(m)
	if s.val.CheckConfig(doc) == nil {
		return Fail, fmt.Sprintf("the configuration schema accepts an unknown setting %q, so a misspelt setting would be ignored; "+
			"set additionalProperties (or unevaluatedProperties) to false", unknownProperty)
	}
	return Pass, ""
}

func checkBadConfig(ctx context.Context, s *session) (Status, string) {
	var cases []mutation
	for i, b := range s.opts.File.BadConfigs {
		why := b.Why
		if why == "" {
			why = fmt.Sprintf("bad_configs[%d] of the conformance file", i)
		}
		cases = append(cases, mutation{doc: b.Config, why: why})
	}
	if len(s.desc.ConfigSchema) == 0 {
		cases = append(cases, mutation{doc: json.RawMessage(`{"` + unknownProperty + `":true}`),
			why: "a setting given to a plugin that takes no configuration", property: unknownProperty})
	} else {
		for _, m := range mutations(s.desc.ConfigSchema, s.config()) {
			if s.val.CheckConfig(m.doc) != nil {
				cases = append(cases, m)
			}
		}
	}
	if len(cases) == 0 {
		return Skip, "nothing to check: the configuration schema accepts every configuration the kit can make; " +
			"list configurations the plugin must refuse in bad_configs"
	}
	var fails []string
	for _, c := range cases {
		cctx, cancel := s.call(ctx)
		// Sent without the hub's own check, which would refuse it first:
		// the plugin must not rely on the hub.
		e := s.inst.configure(cctx, c.doc, nil)
		cancel()
		switch {
		case e == nil:
			fails = append(fails, fmt.Sprintf("accepted a configuration with %s: %s", c.why, c.doc))
		case e.Code != sdk.CodeConfigInvalid:
			fails = append(fails, fmt.Sprintf("refused a configuration with %s with code %q, want %s: %v", c.why, e.Code, sdk.CodeConfigInvalid, e))
		case strings.TrimSpace(e.Message) == "":
			fails = append(fails, fmt.Sprintf("refused a configuration with %s without saying why", c.why))
		case c.property != "" && !strings.Contains(e.Field, c.property) && !strings.Contains(e.Message, c.property):
			fails = append(fails, fmt.Sprintf("refused a configuration with %s but its error does not name %q: %v", c.why, c.property, e))
		}
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	return Pass, fmt.Sprintf("%d bad configurations refused", len(cases))
}

func checkValidConfig(ctx context.Context, s *session) (Status, string) {
	if err := s.val.CheckConfig(s.config()); err != nil {
		return Error, fmt.Sprintf("the configuration in the conformance file is not valid against the plugin's configuration schema, "+
			"so the hub would never send it; fix the file (or the schema): %v", err)
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	if e := s.inst.configure(cctx, s.config(), s.hub); e != nil {
		return Fail, fmt.Sprintf("refused the configuration of the conformance file: %v", withStderr(e, s.inst.stderr))
	}
	return Pass, ""
}

func checkHealth(ctx context.Context, s *session) (Status, string) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.inst.rpc.Health(cctx, &pluginv1.HealthRequest{})
	if err != nil {
		return Fail, fmt.Sprintf("Health failed: %v", callError(cctx, "health", err))
	}
	if resp.GetStatus() != pluginv1.HealthResponse_STATUS_SERVING {
		return Fail, fmt.Sprintf("configured, it reports %s: %s", resp.GetStatus(), resp.GetMessage())
	}
	return Pass, ""
}

// emitted is what the plugin replied while handling one sample.
type emitted struct {
	label   string
	replies []sdk.Message
}

func checkSamples(ctx context.Context, s *session) (Status, string) {
	if len(s.handled) == 0 {
		return Skip, "nothing to check: the plugin handles no message types"
	}
	var fails []string
	s.emitted = nil
	for i, sm := range s.samples {
		phase := fmt.Sprintf("CC-PLUGIN-009/%d", i)
		s.hub.setPhase(phase)
		replies, e := s.deliver(ctx, s.message(sm.msg))
		if e != nil {
			msg := fmt.Sprintf("%s: %v", sm.label, e)
			if sm.generated {
				msg += " (the payload was made from the schema: add a realistic sample to the conformance file)"
			}
			fails = append(fails, msg)
		}
		s.emitted = append(s.emitted, emitted{label: sm.label, replies: replies})
		if len(s.hub.eventsOf(phase)) > 0 {
			s.touching = append(s.touching, i)
		}
	}
	switch {
	case len(fails) > 0:
		return Fail, strings.Join(append(fails, s.problems...), "\n")
	case len(s.problems) > 0:
		return Error, strings.Join(s.problems, "\n")
	}
	return Pass, fmt.Sprintf("%d messages handled, %d of them called the hub", len(s.samples), len(s.touching))
}

func checkEmitted(_ context.Context, s *session) (Status, string) {
	var bad []string
	replies, subs := 0, 0
	for _, em := range s.emitted {
		for i, r := range em.replies {
			replies++
			if err := s.val.CheckSent(r); err != nil {
				bad = append(bad, fmt.Sprintf("reply %d to %s: %v", i, em.label, err))
			}
		}
	}
	for i, sm := range s.samples {
		for _, ev := range s.hub.eventsOf(fmt.Sprintf("CC-PLUGIN-009/%d", i)) {
			if ev.op == "query" {
				continue
			}
			subs += len(ev.msgs)
			if ev.invalid != nil {
				bad = append(bad, fmt.Sprintf("%s while handling %s: %v", ev.op, sm.label, ev.invalid))
			}
		}
	}
	if len(bad) > 0 {
		return Fail, strings.Join(bad, "\n")
	}
	if replies+subs == 0 {
		return Skip, "nothing to check: no message made the plugin reply or submit"
	}
	return Pass, fmt.Sprintf("%d replies and %d submitted messages valid", replies, subs)
}

func checkInvalidPayload(ctx context.Context, s *session) (Status, string) {
	if len(s.handled) == 0 {
		return Skip, "nothing to check: the plugin handles no message types"
	}
	type bad struct {
		m   sdk.Message
		why string
	}
	var cases []bad
	for _, mt := range s.desc.Handles {
		var base json.RawMessage
		for _, sm := range s.samples {
			if sm.msg.Type == mt.Type {
				base = sm.msg.Payload
				break
			}
		}
		src, err := schemaOf(mt)
		if err != nil {
			continue
		}
		for _, mu := range mutations(src, base) {
			m := s.message(sdk.Message{Type: mt.Type, Payload: mu.doc})
			if e := sdk.AsError(s.val.CheckHandled(m)); e != nil && e.Code == sdk.CodeSchemaInvalid {
				cases = append(cases, bad{m: m, why: fmt.Sprintf("%s with %s", mt.Type, mu.why)})
			}
		}
	}
	first := s.desc.Handles[0].Type
	cases = append(cases, bad{m: s.message(sdk.Message{Type: first, Payload: json.RawMessage(`["not", "an", "object"]`)}),
		why: first + " whose payload is not a JSON object"})
	var fails []string
	for i, c := range cases {
		phase := fmt.Sprintf("CC-PLUGIN-011/%d", i)
		s.hub.setPhase(phase)
		replies, e := s.deliver(ctx, c.m)
		switch {
		case e == nil:
			fails = append(fails, fmt.Sprintf("accepted %s (%d replies)", c.why, len(replies)))
		case e.Code != sdk.CodeSchemaInvalid:
			fails = append(fails, fmt.Sprintf("answered %s with %v; want code %s", c.why, e, sdk.CodeSchemaInvalid))
		case len(replies) > 0:
			fails = append(fails, fmt.Sprintf("refused %s but replied %d messages", c.why, len(replies)))
		}
		if n := submissions(s.hub.eventsOf(phase)); n > 0 {
			fails = append(fails, fmt.Sprintf("submitted to the hub %d times while handling %s", n, c.why))
		}
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	return Pass, fmt.Sprintf("%d invalid payloads refused", len(cases))
}

// unknownType is a message type no plugin handles.
const unknownType = "conformance_kit.unknown.v1"

func checkUnknownType(ctx context.Context, s *session) (Status, string) {
	if _, ok := s.handled[unknownType]; ok {
		return Error, "the plugin claims to handle " + unknownType + ", the kit's made-up type"
	}
	m := s.message(sdk.Message{Type: unknownType, SchemaID: "https://conformance.example/unknown.v1.json", Payload: json.RawMessage(`{}`)})
	replies, e := s.deliver(ctx, m)
	var fails []string
	switch {
	case e == nil:
		fails = append(fails, fmt.Sprintf("accepted a message of type %s, which it does not declare (%d replies)", unknownType, len(replies)))
	case e.Code != sdk.CodeUnsupportedMessage:
		fails = append(fails, fmt.Sprintf("answered a message of type %s with %v; want code %s", unknownType, e, sdk.CodeUnsupportedMessage))
	case len(replies) > 0:
		fails = append(fails, fmt.Sprintf("refused a message of type %s but replied %d messages", unknownType, len(replies)))
	}
	if n := submissions(s.hub.eventsOf("CC-PLUGIN-012")); n > 0 {
		fails = append(fails, fmt.Sprintf("submitted to the hub %d times while handling a message of type %s", n, unknownType))
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	return Pass, ""
}

// effects sums what a phase's submissions applied at the hub for the first time.
func effects(evs []hubEvent) (applied, noKey int, types []string) {
	for _, e := range evs {
		applied += e.effects
		noKey += e.noKey
		if e.effects > 0 {
			for _, m := range e.msgs {
				types = append(types, fmt.Sprintf("%s (idempotency key %q)", m.Type, m.IdempotencyKey))
			}
		}
	}
	return applied, noKey, types
}

func checkDuplicate(ctx context.Context, s *session) (Status, string) {
	if len(s.touching) == 0 {
		return Skip, "nothing to check: no message made the plugin submit to the hub"
	}
	var fails []string
	for _, i := range s.touching {
		sm := s.samples[i]
		m := s.message(sm.msg)
		first := fmt.Sprintf("CC-PLUGIN-013/%d/first", i)
		second := fmt.Sprintf("CC-PLUGIN-013/%d/second", i)
		s.hub.setPhase(first)
		if _, e := s.deliver(ctx, m); e != nil {
			fails = append(fails, fmt.Sprintf("%s, first delivery: %v", sm.label, e))
			continue
		}
		s.hub.setPhase(second)
		if _, e := s.deliver(ctx, m); e != nil {
			fails = append(fails, fmt.Sprintf("%s, delivered again: %v; a redelivery must be answered as the first delivery was", sm.label, e))
		}
		if _, noKey, _ := effects(s.hub.eventsOf(first)); noKey > 0 {
			fails = append(fails, fmt.Sprintf("%s: submitted %d messages without an idempotency key, so the hub cannot tell a redelivery from a new request", sm.label, noKey))
		}
		if n, _, what := effects(s.hub.eventsOf(second)); n > 0 {
			fails = append(fails, fmt.Sprintf("%s delivered again had a second effect at the hub: %s", sm.label, strings.Join(what, ", ")))
		}
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	return Pass, fmt.Sprintf("%d messages delivered twice, one effect each", len(s.touching))
}

// alive fails with the plugin's last words if its process has ended.
func (s *session) alive() string {
	if s.inst.pc.Exited() {
		return withStderr(fmt.Errorf("the plugin process has exited"), s.inst.stderr).Error()
	}
	return ""
}

func checkSlowHub(ctx context.Context, s *session) (Status, string) {
	if len(s.touching) == 0 {
		return Skip, "nothing to check: no message made the plugin call the hub"
	}
	sm := s.samples[s.touching[0]]
	s.hub.setMode(hubSlow, "")
	dctx, cancel := context.WithTimeout(ctx, s.opts.SlowDeadline)
	deadline, _ := dctx.Deadline()
	start := time.Now()
	_, e, transport := s.inst.handle(dctx, s.message(sm.msg))
	took := time.Since(start)
	cancel()
	var fails []string
	if took > s.opts.SlowDeadline+time.Second {
		fails = append(fails, fmt.Sprintf("Handle of %s took %s with a deadline of %s", sm.label, took.Round(time.Millisecond), s.opts.SlowDeadline))
	}
	if e != nil && !e.Retryable && !transport {
		fails = append(fails, fmt.Sprintf("answered %s, while the hub was not answering, with the non-retryable %v; a retry could succeed", sm.label, e))
	}
	// Every call to the hub made meanwhile must carry Handle's deadline and
	// end soon after it.
	grace := deadline.Add(time.Second)
	for time.Now().Before(grace) && !allDone(s.hub.eventsOf("CC-PLUGIN-014")) {
		time.Sleep(20 * time.Millisecond)
	}
	evs := s.hub.eventsOf("CC-PLUGIN-014")
	for _, ev := range evs {
		switch {
		case !ev.hasDeadline:
			fails = append(fails, fmt.Sprintf("its %s call to the hub carried no deadline: pass Handle's context on to the Hub", ev.op))
		case ev.deadline.After(deadline.Add(100 * time.Millisecond)):
			fails = append(fails, fmt.Sprintf("its %s call to the hub had a deadline %s after Handle's", ev.op, ev.deadline.Sub(deadline).Round(time.Millisecond)))
		}
		if !ev.done {
			fails = append(fails, fmt.Sprintf("its %s call to the hub was still waiting a second after Handle's deadline", ev.op))
		}
	}
	s.hub.setMode(hubNormal, "")
	s.hub.wait(s.hub.slowCap + time.Second)
	if len(evs) == 0 && len(fails) == 0 {
		return Skip, fmt.Sprintf("nothing to check: %s did not call the hub this time", sm.label)
	}
	if dead := s.alive(); dead != "" {
		return Fail, strings.Join(append(fails, dead), "\n")
	}
	s.hub.setPhase("CC-PLUGIN-014/after")
	if _, e := s.deliver(ctx, s.message(sm.msg)); e != nil {
		fails = append(fails, fmt.Sprintf("once the hub answered again, %s failed: %v", sm.label, e))
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	msg := "answered success"
	if e != nil {
		msg = "answered the retryable " + e.Code
	}
	return Pass, fmt.Sprintf("%s in %s with a deadline of %s", msg, took.Round(time.Millisecond), s.opts.SlowDeadline)
}

func allDone(evs []hubEvent) bool {
	for _, e := range evs {
		if !e.done {
			return false
		}
	}
	return true
}

func checkFailingHub(ctx context.Context, s *session) (Status, string) {
	if len(s.touching) == 0 {
		return Skip, "nothing to check: no message made the plugin call the hub"
	}
	sm := s.samples[s.touching[0]]
	var fails []string
	for _, code := range []string{sdk.CodeUnavailable, sdk.CodeTimeout} {
		s.hub.setMode(hubFailing, code)
		cctx, cancel := s.call(ctx)
		_, e, transport := s.inst.handle(cctx, s.message(sm.msg))
		cancel()
		switch {
		case transport:
			fails = append(fails, fmt.Sprintf("with the hub failing with %s, %s got no answer: %v", code, sm.label, e))
		case e != nil && !e.Retryable:
			fails = append(fails, fmt.Sprintf("with the hub failing with the retryable %s, %s was answered with the non-retryable %v; the hub would give up on a message a retry could deliver", code, sm.label, e))
		}
	}
	s.hub.setMode(hubNormal, "")
	if dead := s.alive(); dead != "" {
		fails = append(fails, dead)
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	return Pass, ""
}

func checkConcurrent(ctx context.Context, s *session) (Status, string) {
	if len(s.samples) == 0 {
		return Skip, "nothing to check: no message to deliver"
	}
	n := s.opts.Concurrency
	var mu sync.Mutex
	var fails []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		sm := s.samples[i%len(s.samples)]
		m := s.message(sm.msg)
		wg.Go(func() {
			replies, e := s.deliver(ctx, m)
			var bad []string
			if e != nil {
				bad = append(bad, fmt.Sprintf("request %d, %s: %v", i, sm.label, e))
			}
			for j, r := range replies {
				if err := s.val.CheckSent(r); err != nil {
					bad = append(bad, fmt.Sprintf("request %d, %s, reply %d: %v", i, sm.label, j, err))
				}
			}
			mu.Lock()
			fails = append(fails, bad...)
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	if len(fails) > 0 {
		const shown = 5
		msg := fmt.Sprintf("%d of %d concurrent requests went wrong:\n", len(fails), n)
		if len(fails) > shown {
			fails = append(fails[:shown], fmt.Sprintf("… and %d more", len(fails)-shown))
		}
		return Fail, msg + strings.Join(fails, "\n")
	}
	if dead := s.alive(); dead != "" {
		return Fail, dead
	}
	return Pass, fmt.Sprintf("%d concurrent requests answered in %s", n, took.Round(time.Millisecond))
}

func checkRestart(ctx context.Context, s *session) (Status, string) {
	var sm *sample
	if len(s.touching) > 0 {
		sm = &s.samples[s.touching[0]]
	} else if len(s.samples) > 0 {
		sm = &s.samples[0]
	}
	var m sdk.Message
	if sm != nil {
		m = s.message(sm.msg)
		s.hub.setPhase("CC-PLUGIN-017/before")
		if _, e := s.deliver(ctx, m); e != nil {
			return Fail, fmt.Sprintf("before the crash, %s failed: %v", sm.label, e)
		}
	}
	old := s.inst
	killPID(old.pid)
	if !old.waitExit(5 * time.Second) {
		return Error, fmt.Sprintf("the plugin process %d did not die of SIGKILL within 5s", old.pid)
	}
	old.close()
	s.inst = nil
	start := time.Now()
	inst, err := s.launchConfigured(ctx)
	if err != nil {
		return Fail, fmt.Sprintf("after kill -9, the plugin could not be launched and configured again: %v", err)
	}
	s.inst = inst
	up := time.Since(start)
	if sm == nil {
		return Pass, fmt.Sprintf("launched and configured again in %s", up.Round(time.Millisecond))
	}
	s.hub.setPhase("CC-PLUGIN-017/after")
	if _, e := s.deliver(ctx, m); e != nil {
		return Fail, fmt.Sprintf("after the restart, %s delivered again failed: %v", sm.label, e)
	}
	if n, _, what := effects(s.hub.eventsOf("CC-PLUGIN-017/after")); n > 0 {
		return Fail, fmt.Sprintf("%s, handled before the crash and delivered again after it, had a second effect at the hub: %s; "+
			"derive idempotency keys from the message, never from memory, the time or a random number", sm.label, strings.Join(what, ", "))
	}
	return Pass, fmt.Sprintf("launched and configured again in %s; %s redelivered with no second effect", up.Round(time.Millisecond), sm.label)
}

func checkShutdown(ctx context.Context, s *session) (Status, string) {
	if s.inst == nil {
		inst, err := s.launchConfigured(ctx)
		if err != nil {
			return Error, fmt.Sprintf("no running plugin to stop, and a new launch failed: %v", err)
		}
		s.inst = inst
	}
	inst := s.inst
	s.inst = nil
	defer inst.close()
	kids := descendants(inst.pid)
	var fails []string

	sctx, cancel := context.WithTimeout(ctx, s.opts.StopTimeout)
	start := time.Now()
	resp, err := inst.rpc.Stop(sctx, &pluginv1.StopRequest{})
	stopped := time.Since(start)
	switch {
	case err != nil && sctx.Err() != nil:
		fails = append(fails, fmt.Sprintf("Stop did not return within %s", s.opts.StopTimeout))
	case err != nil:
		fails = append(fails, fmt.Sprintf("Stop failed: %v", err))
	case resp.GetError() != nil:
		fails = append(fails, fmt.Sprintf("Stop reported: %v", pluginwire.FromWireError(resp.GetError())))
	}
	cancel()

	// Then what the hub's plugin host does: go-plugin's shutdown, which
	// ends the plugin's gRPC server and so sdk.Serve.
	exitStart := time.Now()
	if proto, err := inst.pc.Client(); err == nil {
		go func() { _ = proto.Close() }()
	}
	if !inst.waitExit(s.opts.ExitTimeout) {
		fails = append(fails, fmt.Sprintf("the process was still running %s after Stop and go-plugin's shutdown", s.opts.ExitTimeout))
	}
	exited := time.Since(exitStart)
	inst.close()

	deadline := time.Now().Add(time.Second)
	var left []string
	for _, k := range kids {
		for k.alive() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if k.alive() {
			left = append(left, fmt.Sprintf("%d (%s)", k.pid, k.comm))
			killPID(k.pid)
		}
	}
	if len(left) > 0 {
		fails = append(fails, fmt.Sprintf("left %d process(es) running after it exited: %s", len(left), strings.Join(left, ", ")))
	}
	if len(fails) > 0 {
		return Fail, strings.Join(fails, "\n")
	}
	msg := fmt.Sprintf("stopped in %s, exited %s later", stopped.Round(time.Millisecond), exited.Round(time.Millisecond))
	if !canSeeChildren {
		msg += "; child processes not checked on this system"
	}
	return Pass, msg
}
