package iso

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	iso8583errors "github.com/moov-io/iso8583/errors"
)

// corpusFrames are well-formed frames of every message type plus the
// published one: the fuzzers mutate from these. They are also committed
// under testdata/fuzz (see TestWriteFuzzCorpus).
func corpusFrames(t testing.TB) map[string][]byte {
	out := map[string][]byte{"published-0200": unhex(t, publishedFrame)}
	ms, err := sampleMessages(t)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range ms {
		f, err := EncodeFrame(m)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = f
	}
	return out
}

// checkDecoded holds for every message Decode accepts: it re-encodes to the
// same bytes and its MAC can be computed and checked without panicking.
func checkDecoded(t *testing.T, want []byte, encode func() ([]byte, error)) {
	got, err := encode()
	if err != nil {
		t.Fatalf("decoded message does not encode: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("decoded message re-encodes differently:\n got %X\nwant %X", got, want)
	}
}

func checkErr(t *testing.T, err error) {
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error is not a *DecodeError: %T %v", err, err)
	}
	var ue *iso8583errors.UnpackError
	if errors.As(err, &ue) {
		t.Fatalf("error keeps the raw message")
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, b := range corpusFrames(f) {
		f.Add(b)
	}
	mak := key(f, testMAK)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeFrame(data)
		if err != nil {
			checkErr(t, err)
			return
		}
		checkDecoded(t, data, func() ([]byte, error) { return EncodeFrame(m) })
		_ = VerifyMAC(m, MACECB, mak)
		_ = VerifyMAC(m, MACX919, mak)
		if _, err := NewResponse(m, "00"); err == nil {
			_, _ = RequestIDs{}.GenerateRequestID(m)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, b := range corpusFrames(f) {
		f.Add(b[LengthSize:])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			checkErr(t, err)
			return
		}
		checkDecoded(t, data, func() ([]byte, error) { return Encode(m) })
		for _, id := range []int{FieldReserved60, FieldOriginal, FieldAdditionalData} {
			if s, err := m.GetString(id); err == nil && isSet(m, id) {
				_, _ = ParseField60(s)
				_, _ = ParseOriginal(s)
				_, _ = ParseTotals(s)
				_, _ = ParseBatch(s)
			}
		}
	})
}

// FuzzDecodeStream feeds a byte stream to Codec.ReadMessage the way
// iso8583-connection does, until the stream ends.
func FuzzDecodeStream(f *testing.F) {
	frames := corpusFrames(f)
	var all []byte
	for _, b := range frames {
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(append([]byte{0, 0}, all...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 1000 {
			_, err := Codec{}.ReadMessage(r)
			if err == nil {
				continue
			}
			var ue *iso8583errors.UnpackError
			if errors.As(err, &ue) {
				if ue.RawMessage != nil {
					t.Fatal("raw message kept")
				}
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from corpusFrames when
// CITYCARD_WRITE_FUZZ_CORPUS=1; otherwise it checks the committed corpus
// is there.
func TestWriteFuzzCorpus(t *testing.T) {
	frames := corpusFrames(t)
	for _, fz := range []string{"FuzzDecodeFrame", "FuzzDecodeMessage", "FuzzDecodeStream"} {
		dir := filepath.Join("testdata", "fuzz", fz)
		if os.Getenv("CITYCARD_WRITE_FUZZ_CORPUS") != "1" {
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) < len(frames) {
				t.Errorf("%s: committed seed corpus missing (%v)", dir, err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range frames {
			if fz == "FuzzDecodeMessage" {
				b = b[LengthSize:]
			}
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
