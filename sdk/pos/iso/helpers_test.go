package iso

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/moov-io/iso8583"
)

// publishedFrame is a 0200 purchase frame and its MAC ("B3A092AE", UnionPay
// ECB under TAK 0723C80DB5F4CD3D) as published in the question "银联POS MAC
// 计算" at q.cnblogs.com/q/128930: length, TPDU 6000030000, header
// 603210320072, then the message.
const publishedFrame = `007f 6000030000 603210320072 0200 3020048000c08015
	0000000000000012340000020300993030303030303031393532373138313832
	32313738373531353600192600000100060000000000435f0112323834343132
	3334353637383930313233345f03063136303033365f04063230303832365c02
	30314233413039324145`

const publishedTAK = "0723C80DB5F4CD3D"

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("hex: %v", err)
	}
	return b
}

func key(t testing.TB, h string) cardcrypto.Key {
	t.Helper()
	k, err := cardcrypto.ParseKey(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pan(t testing.TB, s string) cardcrypto.PAN {
	t.Helper()
	p, err := cardcrypto.ParsePAN(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	testTerminal = Terminal{Envelope: DefaultEnvelope(0x0003, 0x0000), TerminalID: "10000001", MerchantID: "898310048140001"}
	testTime     = time.Date(2026, 11, 26, 9, 30, 15, 0, time.UTC)
	testCardPAN  = "6222021234567890128"
	testMAK      = "C24A8FB57AA20123"
	testMAK16    = "0123456789ABCDEFFEDCBA9876543210"
)

func str(t testing.TB, m *iso8583.Message, id int) string {
	t.Helper()
	if !isSet(m, id) {
		return ""
	}
	s, err := m.GetString(id)
	if err != nil {
		t.Fatalf("field %d: %v", id, err)
	}
	return s
}
