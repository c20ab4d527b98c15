package payments

import (
	"context"
	"encoding/json"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk"
)

// CityZone is the city's time zone (China Standard Time): a reconciliation
// day runs from its midnight to the next, as the insurer's does.
var CityZone = time.FixedZone("CST", 8*3600)

// Totals are a day's settled bills as one side counts them.
type Totals struct {
	Count int `json:"count"`
	sdk.MedicalSplit
}

// Difference is one figure the hub and the insurer count differently.
type Difference struct {
	Field   string `json:"field"`
	Hub     int64  `json:"hub"`
	Insurer int64  `json:"insurer"`
}

// ReconciledBill is one bill the hub settled that day.
type ReconciledBill struct {
	BillID   string `json:"bill_id"`
	Hospital string `json:"hospital"`
	SetlID   string `json:"setl_id"`
	sdk.MedicalSplit
}

// Reconciliation compares a day's settlements as the hub and the insurer
// count them.
type Reconciliation struct {
	Date        string           `json:"date"`
	Plugin      string           `json:"plugin"`
	Hub         Totals           `json:"hub"`
	Insurer     Totals           `json:"insurer"`
	Matched     bool             `json:"matched"`
	Differences []Difference     `json:"differences"`
	Bills       []ReconciledBill `json:"bills"`
}

// ReconcileMedical compares the insurer's totals of date (YYYY-MM-DD, the
// city's day), which plugin asks it for, with the hub's: the bills settled
// with the insurer that day and not refunded.
func (p *Processor) ReconcileMedical(ctx context.Context, plugin, date string) (Reconciliation, error) {
	day, err := time.ParseInLocation(time.DateOnly, date, CityZone)
	if err != nil {
		return Reconciliation{}, fault.E(fault.InvalidRequest, "date", "date is YYYY-MM-DD: "+err.Error())
	}
	if p.opts.Sagas == nil {
		return Reconciliation{}, fault.E(fault.InvalidRequest, "", "this hub keeps no sagas, so it settles no medical bills")
	}
	rows, err := p.opts.Sagas.SagasCreated(ctx, SagaMedical, day, day.AddDate(0, 0, 1))
	if err != nil {
		return Reconciliation{}, fault.Wrap(fault.Unavailable, err)
	}
	rec := Reconciliation{Date: date, Plugin: plugin, Differences: []Difference{}, Bills: []ReconciledBill{}}
	for _, row := range rows {
		var s medicalSaga
		if row.Operator != OperatorPrefix+plugin || row.State != store.SagaDone || json.Unmarshal(row.Data, &s) != nil ||
			s.Refunded || s.SetlID == "" || s.Settlement == nil {
			continue
		}
		rec.Hub.Count++
		rec.Hub.FundPay += s.Settlement.FundPay
		rec.Hub.AcctPay += s.Settlement.AcctPay
		rec.Hub.CashPay += s.Settlement.CashPay
		rec.Bills = append(rec.Bills, ReconciledBill{BillID: s.Bill.BillID, Hospital: s.Bill.Hospital, SetlID: s.SetlID, MedicalSplit: *s.Settlement})
	}
	payload, _ := json.Marshal(map[string]string{"date": date})
	ctx, cancel := context.WithTimeout(ctx, p.insurerTimeout())
	defer cancel()
	replies, err := p.send(ctx, plugin, sdk.Message{Type: TypeMedicalReconcile, Payload: payload})
	if err != nil {
		return Reconciliation{}, err
	}
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, &rec.Insurer) != nil {
		return Reconciliation{}, fault.E(fault.Internal, "", "the insurer's day totals do not decode")
	}
	for _, d := range []Difference{
		{"count", int64(rec.Hub.Count), int64(rec.Insurer.Count)},
		{"fund_pay", rec.Hub.FundPay, rec.Insurer.FundPay},
		{"acct_pay", rec.Hub.AcctPay, rec.Insurer.AcctPay},
		{"cash_pay", rec.Hub.CashPay, rec.Insurer.CashPay},
	} {
		if d.Hub != d.Insurer {
			rec.Differences = append(rec.Differences, d)
		}
	}
	rec.Matched = len(rec.Differences) == 0
	return rec, nil
}
