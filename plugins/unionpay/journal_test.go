package unionpay

import (
	"os"
	"path/filepath"
	"testing"
)

// TestJournalRecovers replays a journal left by a plugin that died while
// waiting for the switch, with a torn last line: the authorisation it was
// waiting for is declined 68 and its reversal queued, and STANs continue.
func TestJournalRecovers(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	done := original{Key: "k1", STAN: "000041", Date: "1126", Amount: 100, Currency: "156", Terminal: "00010001",
		Merchant: "898310048990001", EntryMode: "012", MaskedPAN: "622202******0001"}
	waiting := done
	waiting.Key, waiting.STAN = "k2", "000042"
	if err := j.write(record{Op: "sent", Key: "k1", Orig: &done},
		record{Op: "answer", Key: "k1", Answer: &Authorization{Status: Approved, ResponseCode: "00", STAN: "000041"}},
		record{Op: "sent", Key: "k2", Orig: &waiting}); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"op":"answer","key":"k3","ans`); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := j.answer("k1"); !ok || a.Status != Approved {
		t.Errorf("k1 = %+v, %v", a, ok)
	}
	if a, ok := j.answer("k2"); !ok || a.Status != Declined || a.ResponseCode != "68" {
		t.Errorf("k2 = %+v, %v; want declined 68", a, ok)
	}
	p := j.pending()
	if len(p) != 1 || p[0].Key != "k2" || p[0].Reason != "98" {
		t.Errorf("pending reversals = %+v", p)
	}
	if s := j.nextSTAN(); s != "000043" {
		t.Errorf("next STAN = %s, want 000043", s)
	}
	// What is written after the torn line is read back.
	if err := j.write(record{Op: "acked", Key: "k2"}); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if acked, queued := j.reversalState("k2"); !acked || queued {
		t.Errorf("after reopening: acked %v, queued %v; want acked", acked, queued)
	}
	_ = j.close()
}
