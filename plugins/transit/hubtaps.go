package transit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// sent is what the hub answered for a list of taps: one result per tap, in
// order, the gaps it saw and the deny list's version.
type sent struct {
	results []TapResult
	gaps    []Gap
	version int64
}

// tapField finds the tap an sdk schema error is about: "/payload/taps/3/card"
// from Submit, "/2/payload/taps/3/card" from SubmitBatch.
var tapField = regexp.MustCompile(`^(?:/([0-9]+))?/payload/taps/([0-9]+)(/.*)?$`)

// sendTaps hands taps to the hub as transit.taps.v1 messages of at most
// maxTapsPerMessage taps: one Submit, or one SubmitBatch when there are
// several. A tap that breaks the message schema is answered refused on its
// own and the rest are sent again, so one bad tap never sinks the others.
// A message the hub refuses as a whole leaves its taps StatusRetry. The
// error is for a call that failed as a whole: nothing was answered, and
// the validators keep the taps.
func (st *state) sendTaps(ctx context.Context, taps []tap.Tap, correlation, path string) (sent, error) {
	out := sent{results: make([]TapResult, len(taps))}
	todo := make([]int, len(taps)) // indices into taps still to send
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		var chunks [][]int
		for start := 0; start < len(todo); start += maxTapsPerMessage {
			chunks = append(chunks, todo[start:min(start+maxTapsPerMessage, len(todo))])
		}
		msgs := make([]sdk.Message, len(chunks))
		for i, c := range chunks {
			m, err := tapsMessage(taps, c, correlation, path)
			if err != nil {
				return sent{}, err
			}
			msgs[i] = m
		}
		var results []sdk.Result
		var err error
		if len(msgs) == 1 {
			var r sdk.Result
			r, err = st.hub.Submit(ctx, msgs[0])
			results = []sdk.Result{r}
		} else {
			results, err = st.hub.SubmitBatch(ctx, msgs)
		}
		st.stats.submits.Add(1)
		if err != nil {
			if i, ok := badTap(err, chunks); ok {
				e := sdk.AsError(err)
				out.results[i] = refused(taps[i], e.Code)
				todo = without(todo, i)
				continue
			}
			return sent{}, err
		}
		if len(results) != len(msgs) {
			return sent{}, sdk.Errorf(sdk.CodeInternal, "the hub answered %d of %d messages", len(results), len(msgs))
		}
		var again []int
		for k, r := range results {
			c := chunks[k]
			if r.Error != nil {
				if i, ok := badTap(r.Error, [][]int{c}); ok {
					out.results[i] = refused(taps[i], r.Error.Code)
					again = append(again, without(c, i)...)
					continue
				}
				// The taps stay with their validators either way: a refusal
				// that will not pass by itself needs an operator, not a
				// dropped fare.
				level := slog.LevelWarn
				if !r.Error.Retryable {
					level = slog.LevelError
				}
				st.log.Log(ctx, level, "the hub refused a taps message; its taps are answered retry", "correlation_id", correlation,
					"message_id", msgs[k].ID, "taps", len(c), "code", r.Error.Code, "err", r.Error.Message)
				for _, i := range c {
					out.results[i] = TapResult{Device: taps[i].Device, Seq: taps[i].Seq, Status: StatusRetry, Reason: r.Error.Code}
				}
				continue
			}
			var body tapsResult
			if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Results) != len(c) {
				st.log.Error("the hub's answer to a taps message does not match it", "correlation_id", correlation,
					"message_id", msgs[k].ID, "taps", len(c), "results", len(body.Results), "err", err)
				for _, i := range c {
					out.results[i] = TapResult{Device: taps[i].Device, Seq: taps[i].Seq, Status: StatusRetry, Reason: sdk.CodeInternal}
				}
				continue
			}
			for j, i := range c {
				res := body.Results[j]
				if r.Duplicate && res.Status == StatusCharged {
					// The hub answered the whole message before: every
					// fare in it is already posted.
					res.Status = StatusDuplicate
				}
				out.results[i] = res
			}
			out.gaps = append(out.gaps, body.Gaps...)
			out.version = max(out.version, body.DenylistVersion)
		}
		todo = again
	}
	return out, nil
}

// tapsMessage is one transit.taps.v1 message of the taps at idx. Its
// idempotency key is made from the taps themselves, so the same taps sent
// again are the same message to the hub.
func tapsMessage(taps []tap.Tap, idx []int, correlation, path string) (sdk.Message, error) {
	p := tapsPayload{Taps: make([]tap.Tap, len(idx))}
	for j, i := range idx {
		p.Taps[j] = taps[i]
	}
	body, err := json.Marshal(p)
	if err != nil {
		return sdk.Message{}, err
	}
	return sdk.Message{
		Type:           TypeTaps,
		IdempotencyKey: tapsKey(p.Taps, body),
		CorrelationID:  correlation,
		Payload:        body,
		Metadata:       map[string]string{"transit.path": path, "transit.taps": strconv.Itoa(len(idx))},
	}, nil
}

// tapsKey is "taps:DEVICE:SEQ:N:HASH" (the first tap, the count and 32 hex
// digits of the payload's SHA-256), or "taps:HASH" in full when the device
// id is not printable ASCII or too long for the envelope's 128 characters.
func tapsKey(taps []tap.Tap, payload []byte) string {
	sum := sha256.Sum256(payload)
	h := hex.EncodeToString(sum[:])
	first := taps[0]
	k := fmt.Sprintf("taps:%s:%d:%d:%s", first.Device, first.Seq, len(taps), h[:32])
	if len(k) > 128 || !printableASCII(first.Device) {
		return "taps:" + h
	}
	return k
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// badTap finds the tap a schema error points at.
func badTap(err error, chunks [][]int) (int, bool) {
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeSchemaInvalid {
		return 0, false
	}
	m := tapField.FindStringSubmatch(e.Field)
	if m == nil {
		return 0, false
	}
	k := 0
	if m[1] != "" {
		k, _ = strconv.Atoi(m[1])
	}
	j, _ := strconv.Atoi(m[2])
	if k >= len(chunks) || j >= len(chunks[k]) {
		return 0, false
	}
	return chunks[k][j], true
}

func without(idx []int, drop int) []int {
	out := make([]int, 0, len(idx))
	for _, i := range idx {
		if i != drop {
			out = append(out, i)
		}
	}
	return out
}

func refused(t tap.Tap, code string) TapResult {
	return TapResult{Device: t.Device, Seq: t.Seq, Status: StatusRefused, Reason: code}
}
