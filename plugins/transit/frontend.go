package transit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// Headers of the validator protocol (PROTOCOL.md).
const (
	// HeaderDeadline is how long, in milliseconds, the validator waits for
	// an online answer.
	HeaderDeadline = "Citycard-Deadline-Ms"
	// HeaderCorrelation ties a request to the plugin's and the hub's logs.
	HeaderCorrelation = "Correlation-Id"
)

// Bounds of a validator's deadline.
const (
	minDeadline = 50 * time.Millisecond
	maxDeadline = 5 * time.Second
	// maxWait bounds a long poll of the deny list.
	maxWait = 60 * time.Second
	// maxTapBytes bounds one online tap's request body.
	maxTapBytes = 4 << 10
	// bytesPerTap bounds an upload's body: a tap is well under 400 bytes.
	bytesPerTap = 1 << 10
)

// ErrorBody is every error answer of the front end.
type ErrorBody struct {
	// Code is a stable code from the hub's error registry.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field is a JSON pointer into the request, when one value is at fault.
	Field string `json:"field,omitempty"`
	// Decision is "offline" on every error answer to an online tap: the
	// validator decides by itself and uploads the tap later.
	Decision string `json:"decision,omitempty"`
}

// OnlineAnswer is the answer to an online tap: the hub's result and the
// deny list's version at the hub.
type OnlineAnswer struct {
	TapResult
	DenylistVersion int64 `json:"denylist_version"`
}

// UploadAnswer is the answer to an offline upload: a result per tap, in
// order.
type UploadAnswer struct {
	Results         []TapResult `json:"results"`
	Gaps            []Gap       `json:"gaps"`
	DenylistVersion int64       `json:"denylist_version"`
}

// Health is the front end's GET /v1/health answer.
type Health struct {
	Status          string `json:"status"` // "serving" or "not_serving"
	Listen          string `json:"listen"`
	DenylistVersion int64  `json:"denylist_version"`
	DenylistSize    int    `json:"denylist_size"`
	// Code is "unavailable" when not serving, as in an ErrorBody.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func (st *state) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/taps", st.only(http.MethodPost, st.online))
	mux.HandleFunc("/v1/uploads", st.only(http.MethodPost, st.upload))
	mux.HandleFunc("/v1/denylist", st.only(http.MethodGet, st.denylistDownload))
	mux.HandleFunc("/v1/health", st.only(http.MethodGet, st.health))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ErrorBody{Code: "not_found", Message: "no such endpoint: " + r.URL.Path})
	})
	return mux
}

// only answers other methods with 405 and a JSON body; it also gives every
// request a correlation id, the validator's own if it sent a usable one.
func (st *state) only(method string, h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		corr := r.Header.Get(HeaderCorrelation)
		if corr == "" || len(corr) > 128 || !printableASCII(corr) {
			corr = sdk.NewID()
		}
		w.Header().Set(HeaderCorrelation, corr)
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, ErrorBody{Code: sdk.CodeInvalidRequest, Message: r.Method + " is not allowed here; use " + method})
			return
		}
		h(w, r, corr)
	}
}

// online answers one online tap within the validator's deadline.
func (st *state) online(w http.ResponseWriter, r *http.Request, corr string) {
	st.stats.onlineTaps.Add(1)
	offline := func(status int, e ErrorBody) {
		e.Decision = "offline"
		writeError(w, status, e)
	}
	deadline := st.set.onlineDeadline
	if h := r.Header.Get(HeaderDeadline); h != "" {
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil || n <= 0 {
			offline(http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Message: HeaderDeadline + " must be a number of milliseconds"})
			return
		}
		deadline = min(max(time.Duration(n)*time.Millisecond, minDeadline), maxDeadline)
	}
	// Answer a little before the validator gives up, so "decide offline"
	// reaches it rather than a dropped connection.
	start := time.Now()
	respondBy := start.Add(deadline - min(deadline/10, 25*time.Millisecond))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTapBytes+1))
	if err != nil {
		offline(http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Message: "reading the tap: " + err.Error()})
		return
	}
	if len(body) > maxTapBytes {
		offline(http.StatusRequestEntityTooLarge, ErrorBody{Code: sdk.CodeInvalidRequest, Message: fmt.Sprintf("a tap is at most %d bytes", maxTapBytes)})
		return
	}
	t, bad := decodeTap(body, "")
	if bad != nil {
		offline(http.StatusBadRequest, *bad)
		return
	}
	p := &pending{tap: t, deadline: respondBy, done: make(chan answer, 1)}
	if !st.batcher.add(p) {
		offline(http.StatusServiceUnavailable, ErrorBody{Code: sdk.CodeUnavailable, Message: "too many taps waiting for the hub"})
		return
	}
	timer := time.NewTimer(time.Until(respondBy))
	defer timer.Stop()
	select {
	case a := <-p.done:
		w.Header().Set(HeaderCorrelation, a.correlation)
		if a.err != nil {
			e := sdk.AsError(a.err)
			status := http.StatusServiceUnavailable
			if e.Code == sdk.CodeTimeout {
				status = http.StatusGatewayTimeout
			}
			offline(status, ErrorBody{Code: e.Code, Message: "the hub did not answer: " + e.Message})
			return
		}
		if a.result.Status == StatusRetry {
			offline(http.StatusServiceUnavailable, ErrorBody{Code: a.result.Reason, Message: "the hub did not answer this tap"})
			return
		}
		writeJSON(w, http.StatusOK, OnlineAnswer{TapResult: a.result, DenylistVersion: a.version})
	case <-timer.C:
		msg := "no answer from the hub within the deadline; the tap was not sent"
		if !p.state.CompareAndSwap(waiting, abandoned) {
			msg = "no answer from the hub within the deadline; the tap may reach the hub, and its upload will be answered duplicate if it did"
		}
		st.log.Debug("online tap answered offline", "correlation_id", corr, "device", t.Device, "seq", t.Seq, "waited_ms", time.Since(start).Milliseconds())
		offline(http.StatusGatewayTimeout, ErrorBody{Code: sdk.CodeTimeout, Message: msg})
	case <-r.Context().Done():
		p.state.CompareAndSwap(waiting, abandoned)
	}
}

// upload answers an offline upload, tap by tap.
func (st *state) upload(w http.ResponseWriter, r *http.Request, corr string) {
	st.stats.uploads.Add(1)
	limit := int64(st.set.maxUploadTaps)*bytesPerTap + 1024
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Message: "reading the upload: " + err.Error()})
		return
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, ErrorBody{Code: sdk.CodeInvalidRequest,
			Message: fmt.Sprintf("an upload is at most %d taps of %d bytes", st.set.maxUploadTaps, bytesPerTap)})
		return
	}
	var in struct {
		Taps []json.RawMessage `json:"taps"`
	}
	if bad := strict(body, &in); bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	switch {
	case len(in.Taps) == 0:
		writeError(w, http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Field: "/taps", Message: "an upload has at least one tap"})
		return
	case len(in.Taps) > st.set.maxUploadTaps:
		writeError(w, http.StatusRequestEntityTooLarge, ErrorBody{Code: sdk.CodeInvalidRequest, Field: "/taps",
			Message: fmt.Sprintf("an upload has at most %d taps; this one has %d", st.set.maxUploadTaps, len(in.Taps))})
		return
	}
	st.stats.uploadedTaps.Add(int64(len(in.Taps)))
	out := UploadAnswer{Results: make([]TapResult, len(in.Taps)), Gaps: []Gap{}}
	var good []tap.Tap
	var at []int // index in the upload of each good tap
	for i, raw := range in.Taps {
		t, bad := decodeTap(raw, "/taps/"+strconv.Itoa(i))
		if bad != nil {
			var id struct {
				Device string `json:"device"`
				Seq    int64  `json:"seq"`
			}
			_ = json.Unmarshal(raw, &id)
			out.Results[i] = TapResult{Device: id.Device, Seq: id.Seq, Status: StatusRefused, Reason: bad.Code, Field: bad.Field}
			st.log.Warn("uploaded tap refused", "correlation_id", corr, "device", id.Device, "seq", id.Seq, "code", bad.Code, "field", bad.Field, "err", bad.Message)
			continue
		}
		good = append(good, t)
		at = append(at, i)
	}
	version, _, _ := st.deny.state()
	out.DenylistVersion = version
	if len(good) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), st.set.uploadTimeout)
		defer cancel()
		res, err := st.sendTaps(ctx, good, corr, "upload")
		if err != nil {
			e := sdk.AsError(err)
			st.log.Warn("upload not answered", "correlation_id", corr, "taps", len(good), "code", e.Code, "err", e.Message)
			if len(good) == len(in.Taps) {
				status := http.StatusServiceUnavailable
				if e.Code == sdk.CodeTimeout {
					status = http.StatusGatewayTimeout
				}
				writeError(w, status, ErrorBody{Code: e.Code, Message: "the hub did not answer the upload; keep the taps and upload them again: " + e.Message})
				return
			}
			for j, i := range at {
				out.Results[i] = TapResult{Device: good[j].Device, Seq: good[j].Seq, Status: StatusRetry, Reason: e.Code}
			}
		} else {
			for j, i := range at {
				out.Results[i] = res.results[j]
			}
			out.Gaps = append(out.Gaps, res.gaps...)
			out.DenylistVersion = max(out.DenylistVersion, res.version)
			st.noticeVersion(res.version)
		}
	}
	counts := map[string]int{}
	for _, r := range out.Results {
		counts[r.Status]++
	}
	st.log.Info("upload answered", "correlation_id", corr, "taps", len(in.Taps), "charged", counts[StatusCharged],
		"declined", counts[StatusDeclined], "duplicate", counts[StatusDuplicate], "refused", counts[StatusRefused],
		"retry", counts[StatusRetry], "gaps", len(out.Gaps))
	writeJSON(w, http.StatusOK, out)
}

// denylistDownload serves the deny list, incrementally from ?since=V when
// it can, waiting up to ?wait=S seconds for a change when V is current.
func (st *state) denylistDownload(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	since := int64(-1)
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Field: "since", Message: "since is a deny list version, 0 or more"})
			return
		}
		since = n
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, ErrorBody{Code: sdk.CodeInvalidRequest, Field: "wait", Message: "wait is a number of seconds, 0 to 60"})
			return
		}
		wait = min(time.Duration(n)*time.Second, maxWait)
	}
	v, _, loaded := st.deny.state()
	if !loaded {
		writeError(w, http.StatusServiceUnavailable, ErrorBody{Code: sdk.CodeUnavailable, Message: "no deny list from the hub yet; keep the one you have"})
		return
	}
	if since == v && wait > 0 {
		changed := st.deny.wait()
		if cur, _, _ := st.deny.state(); cur == v {
			timer := time.NewTimer(wait)
			select {
			case <-changed:
			case <-timer.C:
			case <-r.Context().Done():
			case <-st.closing:
			}
			timer.Stop()
		}
	}
	delta, full := st.deny.since(since)
	if delta != nil {
		writeJSON(w, http.StatusOK, delta)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(full)
}

func (st *state) health(w http.ResponseWriter, _ *http.Request, _ string) {
	v, n, loaded := st.deny.state()
	h := Health{Status: "serving", Listen: st.ln.Addr().String(), DenylistVersion: v, DenylistSize: n}
	if !loaded {
		h.Status, h.Code, h.Message = "not_serving", sdk.CodeUnavailable, "no deny list from the hub yet"
		writeJSON(w, http.StatusServiceUnavailable, h)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// decodeTap reads one tap strictly and checks its fields as the hub's
// schema does (tap.Check is as strict as its patterns), so a bad tap is
// refused here rather than sinking a batch.
func decodeTap(raw []byte, at string) (tap.Tap, *ErrorBody) {
	var t tap.Tap
	if bad := strict(raw, &t); bad != nil {
		bad.Field = at + bad.Field
		return t, bad
	}
	if field, err := tap.Check(t); err != nil {
		return t, &ErrorBody{Code: sdk.CodeInvalidRequest, Field: at + "/" + field, Message: err.Error()}
	}
	return t, nil
}

// strict decodes a JSON object refusing unknown fields and trailing data.
func strict(raw []byte, v any) *ErrorBody {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return &ErrorBody{Code: "invalid_json", Message: "not valid JSON: " + err.Error()}
		case errors.As(err, &typ):
			return &ErrorBody{Code: sdk.CodeInvalidRequest, Field: "/" + strings.ReplaceAll(typ.Field, ".", "/"), Message: err.Error()}
		}
		if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
			return &ErrorBody{Code: "unknown_field", Field: "/" + strings.TrimSuffix(name, `"`), Message: err.Error()}
		}
		return &ErrorBody{Code: sdk.CodeInvalidRequest, Message: err.Error()}
	}
	if dec.More() {
		return &ErrorBody{Code: "invalid_json", Message: "not valid JSON: data after the object"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e ErrorBody) {
	writeJSON(w, status, e)
}
