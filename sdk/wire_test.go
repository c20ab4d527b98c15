package sdk

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

func TestMessageRoundTrip(t *testing.T) {
	cases := []Message{
		sent(),
		{Type: "a.v1", Payload: json.RawMessage(`{}`)},
		{ID: "x", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CST", 8*3600))},
	}
	for _, m := range cases {
		// Through real protobuf bytes, not just the structs.
		b, err := proto.Marshal(toEnvelope(m))
		if err != nil {
			t.Fatal(err)
		}
		var e pluginv1.Envelope
		if err := proto.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		got := fromEnvelope(&e)
		if !got.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("CreatedAt %v became %v", m.CreatedAt, got.CreatedAt)
		}
		got.CreatedAt, m.CreatedAt = time.Time{}, time.Time{}
		if len(m.Payload) == 0 {
			m.Payload = nil
		}
		if len(got.Metadata) == 0 && len(m.Metadata) == 0 {
			got.Metadata, m.Metadata = nil, nil
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("got %+v, want %+v", got, m)
		}
	}
}

func TestDescriptorRoundTrip(t *testing.T) {
	d := testDescriptor()
	d.Capabilities = []string{"batch"}
	b, err := proto.Marshal(toDescriptor(d))
	if err != nil {
		t.Fatal(err)
	}
	var p pluginv1.Descriptor
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if got := fromDescriptor(&p); !reflect.DeepEqual(got, d) {
		t.Errorf("got %+v, want %+v", got, d)
	}
}

func TestSubmitResponsesCountChecked(t *testing.T) {
	if _, err := fromSubmitResponses(make([]*pluginv1.SubmitResponse, 2), 3); err == nil {
		t.Error("a short answer was accepted")
	}
	rs, err := fromSubmitResponses([]*pluginv1.SubmitResponse{
		{Result: &pluginv1.Result{MessageId: "a", Body: []byte(`{}`), Duplicate: true}},
		{Error: &pluginv1.Error{Code: "card_lost"}},
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].MessageID != "a" || !rs[0].Duplicate || rs[0].Error != nil || rs[1].Error == nil || rs[1].Error.Code != "card_lost" {
		t.Errorf("got %+v", rs)
	}
}
