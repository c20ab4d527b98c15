package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/medical/sim"
)

func clock() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, sim.Zone) }

const (
	alice = "P3101000001" // 70% fund, 50% of the rest from the account
	carol = "P3101000003" // not insured
	org   = "H310001"
)

type client struct {
	t   *testing.T
	url string
	c   *http.Client
	n   int
	mu  sync.Mutex
}

func start(t *testing.T) (*sim.Insurer, *client) {
	t.Helper()
	ins := sim.New(sim.Options{Now: clock})
	srv := httptest.NewServer(ins.Handler())
	t.Cleanup(func() { ins.Close(); srv.Close() })
	return ins, &client{t: t, url: srv.URL, c: &http.Client{Timeout: 5 * time.Second}}
}

func (c *client) msgid() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return fmt.Sprintf("T%08d", c.n)
}

// call posts one transaction under msgid and decodes the output.
func (c *client) call(infno, msgid string, input, out any) sim.Response {
	c.t.Helper()
	in, _ := json.Marshal(input)
	body, _ := json.Marshal(sim.Request{InfNo: infno, MsgID: msgid, Input: in})
	resp, err := c.c.Post(c.url+"/api/"+infno, "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("%s: %v", infno, err)
	}
	defer resp.Body.Close()
	var r struct {
		sim.Response
		Output json.RawMessage `json:"output"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		c.t.Fatal(err)
	}
	if out != nil && r.InfCode == 0 {
		if err := json.Unmarshal(r.Output, out); err != nil {
			c.t.Fatal(err)
		}
	}
	return r.Response
}

func mustOK(t *testing.T, r sim.Response) {
	t.Helper()
	if r.InfCode != 0 {
		t.Fatalf("infcode %d: %s", r.InfCode, r.ErrMsg)
	}
}

var lines = []sim.FeeLine{
	{Code: "110100001", Name: "Consultation", UnitPrice: 2500, Quantity: 1, Amount: 2500},
	{Code: "XJ01CAA040", Name: "Amoxicillin", UnitPrice: 1275, Quantity: 2, Amount: 2550},
}

// visit registers and uploads a visit for alice through the API.
func (c *client) visit(bill string) string {
	c.t.Helper()
	var reg sim.RegisterOutput
	mustOK(c.t, c.call(sim.InfRegister, c.msgid(), sim.RegisterInput{PsnNo: alice, OrgCode: org, BillNo: bill, MedType: "11"}, &reg))
	var up sim.UploadOutput
	mustOK(c.t, c.call(sim.InfUploadFees, c.msgid(), sim.UploadInput{PsnNo: alice, MdtrtID: reg.MdtrtID, OrgCode: org, BillNo: bill, Lines: lines}, &up))
	if up.Total != 5050 || up.MdtrtID != reg.MdtrtID {
		c.t.Fatalf("upload = %+v", up)
	}
	return reg.MdtrtID
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		total, fund, acct int64
		want              sim.Split
	}{
		{5050, 7000, 5000, sim.Split{Total: 5050, FundPay: 3535, AcctPay: 757, CashPay: 758}},
		{999, 8000, 10000, sim.Split{Total: 999, FundPay: 799, AcctPay: 200, CashPay: 0}},
		{1, 7000, 5000, sim.Split{Total: 1, FundPay: 0, AcctPay: 0, CashPay: 1}},
		{10000, 0, 0, sim.Split{Total: 10000, CashPay: 10000}},
	} {
		got := sim.SplitOf(c.total, c.fund, c.acct)
		if got != c.want || got.FundPay+got.AcctPay+got.CashPay != got.Total {
			t.Errorf("SplitOf(%d, %d, %d) = %+v, want %+v", c.total, c.fund, c.acct, got, c.want)
		}
	}
}

func TestPersonInformation(t *testing.T) {
	_, c := start(t)
	var p sim.PersonOutput
	mustOK(t, c.call(sim.InfPerson, c.msgid(), sim.PersonInput{CertNo: "310101199001011234", PsnName: "Alice"}, &p))
	if p.PsnNo != alice || !p.Insured {
		t.Errorf("alice = %+v", p)
	}
	mustOK(t, c.call(sim.InfPerson, c.msgid(), sim.PersonInput{CertNo: "310101197003033456"}, &p))
	if p.PsnNo != carol || p.Insured {
		t.Errorf("carol = %+v", p)
	}
	p = sim.PersonOutput{}
	mustOK(t, c.call(sim.InfPerson, c.msgid(), sim.PersonInput{CertNo: "110101200001010000"}, &p))
	if p.PsnNo != "" || p.Insured {
		t.Errorf("a stranger = %+v", p)
	}
	if r := c.call(sim.InfPerson, c.msgid(), sim.PersonInput{CertNo: "310101199001011234", PsnName: "Mallory"}, nil); r.InfCode != -1 {
		t.Errorf("a wrong name = %+v", r)
	}
	if r := c.call(sim.InfRegister, c.msgid(), sim.RegisterInput{PsnNo: carol, OrgCode: org, BillNo: "B1"}, nil); r.InfCode != -1 {
		t.Errorf("registering the uninsured = %+v", r)
	}
}

func TestPreSettlementAndSettlement(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-1")
	// Registering the same bill again finds the same visit.
	var reg sim.RegisterOutput
	mustOK(t, c.call(sim.InfRegister, c.msgid(), sim.RegisterInput{PsnNo: alice, OrgCode: org, BillNo: "B-1"}, &reg))
	if reg.MdtrtID != id {
		t.Errorf("registered again as %s, first %s", reg.MdtrtID, id)
	}
	want := sim.Split{Total: 5050, FundPay: 3535, AcctPay: 757, CashPay: 758}
	var pre sim.SettleOutput
	mustOK(t, c.call(sim.InfPreSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &pre))
	if pre.Split != want || pre.SetlID != "" {
		t.Errorf("pre-settlement = %+v", pre)
	}
	if r := c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5000}, nil); r.InfCode != -1 {
		t.Errorf("settling another total = %+v", r)
	}
	var st, again sim.SettleOutput
	msgid := c.msgid()
	mustOK(t, c.call(sim.InfSettle, msgid, sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &st))
	if st.Split != want || st.SetlID == "" {
		t.Errorf("settlement = %+v", st)
	}
	// The same msgid, and a new one for the same visit: the same settlement.
	mustOK(t, c.call(sim.InfSettle, msgid, sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &again))
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &again))
	if again != st || len(ins.Settlements()) != 1 {
		t.Errorf("settled again: %+v, %d settlements", again, len(ins.Settlements()))
	}
	// Fees cannot change under a settlement.
	if r := c.call(sim.InfUploadFees, c.msgid(), sim.UploadInput{PsnNo: alice, MdtrtID: id, OrgCode: org, BillNo: "B-1", Lines: lines[:1]}, nil); r.InfCode != -1 {
		t.Errorf("uploading over a settlement = %+v", r)
	}
}

func TestOverrideMakesSettlementDiffer(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-2")
	ins.OverrideSettlement(alice, 6000, 0)
	var pre, st sim.SettleOutput
	mustOK(t, c.call(sim.InfPreSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &pre))
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &st))
	if pre.FundPay != 3535 || st.FundPay != 3030 || st.AcctPay != 0 || st.CashPay != 2020 {
		t.Errorf("pre %+v, settlement %+v", pre.Split, st.Split)
	}
}

func TestPharmacyUploadOpensAVisit(t *testing.T) {
	_, c := start(t)
	var up sim.UploadOutput
	mustOK(t, c.call(sim.InfUploadFees, c.msgid(), sim.UploadInput{PsnNo: alice, OrgCode: "P310009", BillNo: "RX-1", Lines: lines[1:]}, &up))
	if up.MdtrtID == "" || up.Total != 2550 {
		t.Fatalf("upload = %+v", up)
	}
	var st sim.SettleOutput
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: up.MdtrtID, Total: 2550}, &st))
	if st.SetlID == "" || st.FundPay != 1785 {
		t.Errorf("settlement = %+v", st)
	}
	bad := []sim.FeeLine{{Code: "X", UnitPrice: 100, Quantity: 3, Amount: 301}}
	if r := c.call(sim.InfUploadFees, c.msgid(), sim.UploadInput{PsnNo: alice, OrgCode: "P310009", BillNo: "RX-2", Lines: bad}, nil); r.InfCode != -1 {
		t.Errorf("a line that does not multiply out = %+v", r)
	}
}

func TestTimeoutThenCorrection(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-3")
	ins.TimeoutNext(1, 0)
	c.c.Timeout = 200 * time.Millisecond
	in, _ := json.Marshal(sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050})
	body, _ := json.Marshal(sim.Request{InfNo: sim.InfSettle, MsgID: "M-TIMEOUT", Input: in})
	if resp, err := c.c.Post(c.url+"/api/2207", "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
		t.Fatal("a settlement held back was answered")
	}
	c.c.Timeout = 5 * time.Second
	if live := ins.LiveSettlements(); len(live) != 1 || live[0].MsgID != "M-TIMEOUT" {
		t.Fatalf("the timed-out settlement was not booked: %+v", live)
	}
	var out sim.CorrectOutput
	mustOK(t, c.call(sim.InfCorrect, c.msgid(), sim.CorrectInput{OMsgID: "M-TIMEOUT", OInfNo: sim.InfSettle}, &out))
	if !out.Applied || len(ins.LiveSettlements()) != 0 {
		t.Errorf("correction = %+v, live %+v", out, ins.LiveSettlements())
	}
	// Idempotent, and a msgid never seen has nothing to correct.
	mustOK(t, c.call(sim.InfCorrect, c.msgid(), sim.CorrectInput{OMsgID: "M-TIMEOUT", OInfNo: sim.InfSettle}, &out))
	if out.Applied {
		t.Errorf("corrected twice: %+v", out)
	}
	mustOK(t, c.call(sim.InfCorrect, c.msgid(), sim.CorrectInput{OMsgID: "M-NEVER-SEEN", OInfNo: sim.InfSettle}, &out))
	if out.Applied || out.Message != "nothing to correct" {
		t.Errorf("unknown msgid: %+v", out)
	}
	// The visit can be settled anew.
	var st sim.SettleOutput
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &st))
	if cs := ins.Corrections(); len(cs) != 3 || !cs[0].Applied || cs[0].OInfNo != sim.InfSettle {
		t.Errorf("corrections = %+v", cs)
	}
	if n := len(ins.LiveSettlements()); n != 1 {
		t.Errorf("%d live settlements, want 1", n)
	}
}

func TestLateAnswer(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-4")
	ins.TimeoutNext(1, 300*time.Millisecond)
	began := time.Now()
	var st sim.SettleOutput
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, &st))
	if time.Since(began) < 300*time.Millisecond || st.SetlID == "" {
		t.Errorf("answered after %v: %+v", time.Since(began), st)
	}
}

func TestFailNext(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-5")
	ins.FailNext(1, "fund pool closed for maintenance")
	r := c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, nil)
	if r.InfCode != -1 || r.ErrMsg != "fund pool closed for maintenance" || len(ins.Settlements()) != 0 {
		t.Errorf("answer %+v, settlements %+v", r, ins.Settlements())
	}
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, nil))
}

func TestReversalAndReconciliation(t *testing.T) {
	ins, c := start(t)
	var a, b sim.SettleOutput
	ida, idb := c.visit("B-6"), c.visit("B-7")
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: ida, Total: 5050}, &a))
	mustOK(t, c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: idb, Total: 5050}, &b))
	var rev sim.ReverseOutput
	revMsg := c.msgid()
	mustOK(t, c.call(sim.InfReverse, revMsg, sim.ReverseInput{SetlID: b.SetlID, PsnNo: alice, MdtrtID: idb}, &rev))
	if rev.Already {
		t.Errorf("reversal = %+v", rev)
	}
	mustOK(t, c.call(sim.InfReverse, c.msgid(), sim.ReverseInput{SetlID: b.SetlID}, &rev))
	if !rev.Already || len(ins.Reversals()) != 2 {
		t.Errorf("reversed again: %+v, %+v", rev, ins.Reversals())
	}
	if r := c.call(sim.InfReverse, c.msgid(), sim.ReverseInput{SetlID: "ST-NONE"}, nil); r.InfCode != -1 {
		t.Errorf("reversing nothing = %+v", r)
	}
	var rec sim.ReconcileOutput
	mustOK(t, c.call(sim.InfReconcile, c.msgid(), sim.ReconcileInput{Date: "2026-11-26"}, &rec))
	if rec != (sim.ReconcileOutput{Date: "2026-11-26", Count: 1, FundPay: 3535, AcctPay: 757, CashPay: 758}) {
		t.Errorf("reconciliation = %+v", rec)
	}
	// Correcting the reversal reinstates the settlement.
	var out sim.CorrectOutput
	mustOK(t, c.call(sim.InfCorrect, c.msgid(), sim.CorrectInput{OMsgID: revMsg, OInfNo: sim.InfReverse}, &out))
	mustOK(t, c.call(sim.InfReconcile, c.msgid(), sim.ReconcileInput{Date: "2026-11-26"}, &rec))
	if !out.Applied || rec.Count != 2 {
		t.Errorf("correction %+v, reconciliation %+v", out, rec)
	}
	mustOK(t, c.call(sim.InfReconcile, c.msgid(), sim.ReconcileInput{Date: "2026-11-25"}, &rec))
	if rec.Count != 0 {
		t.Errorf("another day = %+v", rec)
	}
}

func TestEnvelope(t *testing.T) {
	_, c := start(t)
	body, _ := json.Marshal(sim.Request{InfNo: "2207", MsgID: "M1"})
	resp, err := c.c.Post(c.url+"/api/1101", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r sim.Response
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if r.InfCode != -1 || r.RefMsgID != "M1" {
		t.Errorf("a mismatched infno = %+v", r)
	}
	if r := c.call("9999", c.msgid(), map[string]any{}, nil); r.InfCode != -1 {
		t.Errorf("unknown transaction = %+v", r)
	}
}

func TestLoadSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, []byte(`{"persons":[{"psn_no":"P1","id_no":"110101200001010000","name":"Dan","insured":true,"fund_ratio_bps":9000,"acct_ratio_bps":0}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := sim.LoadSeed(path)
	if err != nil || len(ps) != 1 || ps[0].FundRatioBps != 9000 {
		t.Fatalf("%+v, %v", ps, err)
	}
	if err := os.WriteFile(path, []byte(`{"persons":[{"psn_no":"P1","id_no":"1","name":"Dan","fund_ratio_bps":12000}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.LoadSeed(path); err == nil {
		t.Error("a ratio above 100% was accepted")
	}
}

func TestConcurrentSettlementsOfOneVisit(t *testing.T) {
	ins, c := start(t)
	id := c.visit("B-8")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			c.call(sim.InfSettle, c.msgid(), sim.SettleInput{PsnNo: alice, MdtrtID: id, Total: 5050}, nil)
		})
	}
	wg.Wait()
	if n := len(ins.Settlements()); n != 1 {
		t.Errorf("%d settlements of one visit", n)
	}
}
