package iso

import "testing"

// The per-message cost the POS front end pays before any business logic:
// decode a frame and check its MAC, then build, MAC and frame the answer.
func BenchmarkDecodeVerifyRespond(b *testing.B) {
	ms, err := sampleMessages(b)
	if err != nil {
		b.Fatal(err)
	}
	frame, err := EncodeFrame(ms["0200-purchase"])
	if err != nil {
		b.Fatal(err)
	}
	mak := key(b, testMAK)
	b.ReportAllocs()
	for b.Loop() {
		m, err := DecodeFrame(frame)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifyMAC(m, MACECB, mak); err != nil {
			b.Fatal(err)
		}
		resp, err := NewResponse(m, "00")
		if err != nil {
			b.Fatal(err)
		}
		if err := SetMAC(resp, MACECB, mak); err != nil {
			b.Fatal(err)
		}
		if _, err := EncodeFrame(resp); err != nil {
			b.Fatal(err)
		}
	}
}
