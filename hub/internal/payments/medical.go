package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk"
)

// Messages the hub sends a medical plugin: settle and reverse settlements
// with the insurer, and ask the insurer's day totals.
const (
	TypeMedicalSettle        = "medical.settle.v1"
	TypeMedicalSettleReverse = "medical.settle_reverse.v1"
	TypeMedicalReconcile     = "medical.reconcile.v1"
)

// SagaMedical is the kind of a medical bill's saga.
const SagaMedical = "medical_bill"

// Legs of a medical bill, in the order they are taken.
const (
	medStart   = "start"   // nothing taken yet
	medInsurer = "insurer" // the insurer is settling its share
	medPurses  = "purses"  // the card's purses are being held
	medBank    = "bank"    // the bank card is being asked for the rest
	medPost    = "post"    // all approved: the bill is being posted
)

// receipt itemises what paid a medical bill: the answer to
// medical.bill.v1 and medical.refund.v1, as the audit log records it.
type receipt struct {
	sdk.MedicalReceipt
}

// AuditOutcome implements ledger.Outcomer.
func (r *receipt) AuditOutcome() string {
	if r.Status == sdk.BillDeclined {
		return "declined:" + r.Reason
	}
	return "ok"
}

// medicalSaga is the durable state of a bill. It never holds the PIN.
type medicalSaga struct {
	Plugin     string            `json:"plugin"`
	Channel    string            `json:"channel"`
	Hash       string            `json:"hash"`
	Bill       sdk.MedicalBill   `json:"bill"`
	Step       string            `json:"step"`
	SetlID     string            `json:"setl_id,omitempty"`
	Settlement *sdk.MedicalSplit `json:"settlement,omitempty"`
	// Answered: the insurer's answer to the settlement came back, so a
	// settlement it did not report (SetlID "") does not exist.
	Answered   bool    `json:"answered,omitempty"`
	Holds      []int64 `json:"holds,omitempty"`
	Medical    int64   `json:"medical_purse"`
	Cash       int64   `json:"cash_purse"`
	Bank       int64   `json:"bank_card"`
	Token      string  `json:"token,omitempty"`
	MaskedBank string  `json:"masked_bank,omitempty"`
	AuthCode   string  `json:"auth_code,omitempty"`
	RRN        string  `json:"rrn,omitempty"`
	Payment    string  `json:"payment,omitempty"`
	Balance    *int64  `json:"balance,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Refunded   bool    `json:"refunded,omitempty"`
}

func medHoldKey(key, purse string) string { return "medical-hold-" + purse + ":" + key }
func medPostKey(key string) string        { return "medical-post:" + key }

func (s *medicalSaga) fund() int64 {
	if s.Settlement == nil {
		return 0
	}
	return s.Settlement.FundPay
}

func (s *medicalSaga) receipt(status string) *receipt {
	b := s.Bill
	r := &receipt{sdk.MedicalReceipt{BillID: b.BillID, Hospital: b.Hospital, Status: status, Reason: s.Reason, Card: b.Card, Total: b.Total,
		Currency: b.Currency, SetlID: s.SetlID, Settlement: s.Settlement, Presettlement: b.Presettlement,
		Payment: s.Payment, Balance: s.Balance, At: time.Now().UTC()}}
	if status != sdk.BillDeclined {
		r.Reason = ""
		r.FundPay, r.MedicalPurse, r.CashPurse, r.BankCard = s.fund(), s.Medical, s.Cash, s.Bank
		if s.Bank > 0 {
			r.BankCardMasked = s.MaskedBank
		}
	}
	return r
}

// medicalBill settles a bill: the insurer's share, then the medical purse
// up to the personal account share, then the cash purse, then the linked
// bank card, each recorded in the saga before it is taken, and posted as
// one transfer. Any refusal undoes what was taken, and the bill declines.
func (p *Processor) medicalBill(ctx context.Context, r request) (ledger.Outcome, error) {
	plugin, c := r.plugin, r.call
	channel, err := p.channel(plugin, "take bills")
	if err != nil {
		return ledger.Outcome{}, err
	}
	if p.opts.Sagas == nil {
		return ledger.Outcome{}, fault.E(fault.InvalidRequest, "type", "this hub keeps no sagas, so it settles no medical bills")
	}
	b, err := decode[sdk.MedicalBill](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if out, ok, err := p.answered(ctx, c); err != nil || ok {
		return out, err
	}
	pin := b.PIN
	b.PIN = ""
	s := &medicalSaga{Plugin: plugin, Channel: channel, Hash: c.RequestHash, Bill: b, Step: medStart}
	rec, done, err := p.startSaga(ctx, c, SagaMedical, s)
	if err != nil || done != nil {
		if done != nil {
			return *done, nil
		}
		return ledger.Outcome{}, err
	}
	// The card first: an unknown or blocked card costs the insurer nothing.
	card, err := p.opts.Service.Get(ctx, b.Card)
	if err != nil {
		return p.undoMedical(ctx, rec, c, s, fault.CodeOf(err))
	}
	if card.Status != store.CardActive {
		return p.undoMedical(ctx, rec, c, s, fault.CardNotActive)
	}
	if b.Insured {
		s.Step = medInsurer
		if err := rec.save(ctx, store.SagaRunning, s); err != nil {
			return ledger.Outcome{}, err
		}
		if reason := p.settleWithInsurer(ctx, c.IdempotencyKey, s); reason != "" {
			return p.undoMedical(ctx, rec, c, s, reason)
		}
	} else {
		s.Settlement = &sdk.MedicalSplit{CashPay: b.Total}
	}
	s.Step = medPurses
	if err := rec.save(ctx, store.SagaRunning, s); err != nil {
		return ledger.Outcome{}, err
	}
	patient := b.Total - s.fund()
	hold := func(purse string, amount int64) (int64, string) {
		hc := c
		hc.IdempotencyKey = medHoldKey(c.IdempotencyKey, purse)
		out, err := p.opts.Service.Hold(ctx, hc, cards.HoldRequest{UpTo: true, ExpiresIn: int64(p.splitHoldTTL() / time.Second),
			PaymentRequest: cards.PaymentRequest{Card: b.Card, Channel: channel, Merchant: b.Hospital, Terminal: b.Terminal,
				Amount: amount, Currency: b.Currency, PIN: pin, Purses: []string{purse}}})
		if err != nil {
			return 0, fault.CodeOf(err)
		}
		var r cards.PaymentResult
		if err := json.Unmarshal(out.Body, &r); err != nil {
			return 0, fault.Internal
		}
		switch {
		case r.Status == cards.Approved:
			id, _ := strconv.ParseInt(r.ID, 10, 64)
			s.Holds = append(s.Holds, id)
			return r.Amount, ""
		case r.Reason == fault.InsufficientFunds || r.Reason == fault.PurseNotAllowed:
			return 0, ""
		}
		return 0, r.Reason
	}
	if acct := min(s.Settlement.AcctPay, patient); acct > 0 {
		n, reason := hold("medical", acct)
		if reason != "" {
			return p.undoMedical(ctx, rec, c, s, reason)
		}
		s.Medical = n
	}
	if rest := patient - s.Medical; rest > 0 {
		n, reason := hold("cash", rest)
		if reason != "" {
			return p.undoMedical(ctx, rec, c, s, reason)
		}
		s.Cash = n
	}
	s.Bank = patient - s.Medical - s.Cash
	if s.Bank > 0 {
		if !p.fallsBack(channel) {
			return p.undoMedical(ctx, rec, c, s, fault.InsufficientFunds)
		}
		link, ok, err := p.linkedBankCard(ctx, b.Card)
		if err != nil || !ok {
			return p.undoMedical(ctx, rec, c, s, fault.InsufficientFunds)
		}
		s.Token, s.MaskedBank, s.Step = link.Token, link.MaskedPAN, medBank
		if err := rec.save(ctx, store.SagaRunning, s); err != nil {
			return ledger.Outcome{}, err
		}
		a, reason := p.authoriseToken(ctx, bankKey(plugin, c.IdempotencyKey), s.Token, s.Bank, b.Currency, b.Hospital, b.Terminal)
		if reason != "" {
			return p.undoMedical(ctx, rec, c, s, reason)
		}
		s.AuthCode, s.RRN = a.AuthCode, a.RRN
	}
	s.Step = medPost
	if err := rec.save(ctx, store.SagaRunning, s); err != nil {
		return ledger.Outcome{}, err
	}
	if err := p.postBill(ctx, c, s); err != nil {
		return p.undoMedical(ctx, rec, c, s, fault.Interrupted)
	}
	out, err := p.opts.Service.Record(ctx, c, "medical.bill", b.Card, s.receipt(sdk.BillSettled))
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := rec.save(ctx, store.SagaDone, s); err != nil {
		p.log.Warn("payments: bill settled, saga not closed", "key", c.IdempotencyKey, "err", err)
	}
	return out, nil
}

// settleWithInsurer has the plugin settle the bill with the insurer; it
// returns the decline's reason, or "" with the settlement in s.
func (p *Processor) settleWithInsurer(ctx context.Context, key string, s *medicalSaga) string {
	b := s.Bill
	payload, _ := json.Marshal(map[string]any{"bill_key": key, "psn_no": b.PsnNo, "mdtrt_id": b.MdtrtID, "bill_id": b.BillID,
		"total": b.Total, "currency": b.Currency})
	ctx, cancel := context.WithTimeout(ctx, p.insurerTimeout())
	defer cancel()
	replies, err := p.send(ctx, s.Plugin, sdk.Message{Type: TypeMedicalSettle, IdempotencyKey: "settle:" + key, Payload: payload})
	if err != nil {
		p.log.Warn("payments: the insurer did not settle", "bill", key, "err", err)
		return fault.InsurerUnavailable
	}
	var st struct {
		Status string `json:"status"`
		SetlID string `json:"setl_id"`
		sdk.MedicalSplit
		Reason string `json:"reason"`
	}
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, &st) != nil {
		return fault.InsurerDeclined
	}
	s.Answered = true
	if st.Status != sdk.BillSettled {
		if st.Reason == "insurer_timeout" {
			return fault.InsurerUnavailable
		}
		return fault.InsurerDeclined
	}
	s.SetlID = st.SetlID
	sp := st.MedicalSplit
	s.Settlement = &sp
	if sp.FundPay < 0 || sp.AcctPay < 0 || sp.CashPay < 0 || sp.FundPay+sp.AcctPay+sp.CashPay != b.Total {
		p.log.Warn("payments: the insurer's settlement does not add up to the bill", "bill", key, "split", sp, "total", b.Total)
		return fault.InsurerDeclined
	}
	return ""
}

func (p *Processor) insurerTimeout() time.Duration {
	if p.opts.InsurerTimeout > 0 {
		return p.opts.InsurerTimeout
	}
	return 60 * time.Second
}

// postBill posts the bill as one transfer: the fund's share receivable
// from the insurer, the purses' holds, the bank card's part.
func (p *Processor) postBill(ctx context.Context, c cards.Call, s *medicalSaga) error {
	b := s.Bill
	pc := c
	pc.IdempotencyKey = medPostKey(c.IdempotencyKey)
	out, err := p.opts.Service.PaySplit(ctx, pc, cards.SplitPaymentRequest{
		PaymentRequest: cards.PaymentRequest{Card: b.Card, Channel: s.Channel, Merchant: b.Hospital, Terminal: b.Terminal,
			Amount: b.Total, Currency: b.Currency},
		Holds: s.Holds, InsurerAmount: s.fund(), BankAmount: s.Bank, MaskedBankCard: s.MaskedBank,
		AuthCode: s.AuthCode, RRN: s.RRN, BankKey: bankKey(s.Plugin, c.IdempotencyKey)})
	if err != nil {
		return err
	}
	return s.readPosting(out.Body)
}

func (s *medicalSaga) readPosting(body []byte) error {
	var r cards.PaymentResult
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	if r.Status != cards.Approved {
		return fmt.Errorf("the bill's posting was %s (%s)", r.Status, r.Reason)
	}
	s.Payment, s.Balance = r.ID, r.Balance
	return nil
}

// undoMedical declines the bill with reason and undoes what it took. What
// cannot be undone now is left to the recovery, with the saga
// compensating.
func (p *Processor) undoMedical(ctx context.Context, rec *sagaRecord, c cards.Call, s *medicalSaga, reason string) (ledger.Outcome, error) {
	ctx = context.WithoutCancel(ctx)
	if !answerable(reason) {
		p.log.Warn("payments: medical bill undone", "key", c.IdempotencyKey, "cause", reason)
		reason = fault.Interrupted
	}
	s.Reason = reason
	if err := rec.save(ctx, store.SagaCompensating, s); err != nil {
		return ledger.Outcome{}, err
	}
	c.RequestHash = s.Hash
	out, err := p.opts.Service.Record(ctx, c, "medical.bill", s.Bill.Card, s.receipt(sdk.BillDeclined))
	if err != nil {
		return ledger.Outcome{}, err
	}
	if err := p.compensateMedical(ctx, c.IdempotencyKey, s); err != nil {
		p.log.Error("payments: medical bill not yet undone; recovery will finish it", "key", c.IdempotencyKey, "err", err)
		return out, nil
	}
	if err := rec.save(ctx, store.SagaUndone, s); err != nil {
		p.log.Warn("payments: medical bill undone, saga not closed", "key", c.IdempotencyKey, "err", err)
	}
	return out, nil
}

// compensateMedical undoes a bill's legs, last taken first: the bank card's
// part, the purses' holds, the insurer's settlement. Each is safe to
// repeat.
func (p *Processor) compensateMedical(ctx context.Context, key string, s *medicalSaga) error {
	if s.Step == medBank || s.Step == medPost {
		if err := p.reverseAtBank(ctx, bankKey(s.Plugin, key)); err != nil {
			return err
		}
	}
	if s.Step != medStart && s.Step != medInsurer {
		for _, purse := range []string{"cash", "medical"} {
			if err := p.releaseHold(ctx, s.Plugin, 0, medHoldKey(key, purse), "medical-release-"+purse+":"+key, s.Hash); err != nil {
				return err
			}
		}
	}
	if s.Bill.Insured && s.Step != medStart {
		if s.SetlID == "" && !s.Answered {
			// The insurer may have settled without the hub hearing of it:
			// asking again by the same key gives that settlement, or makes
			// one that is reversed at once.
			if p.settleWithInsurer(ctx, key, s); !s.Answered {
				return errors.New("the insurer cannot be asked whether it settled")
			}
		}
		if s.SetlID != "" {
			if err := p.reverseSettlement(ctx, key, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// reverseSettlement has the insurer reverse the bill's settlement.
func (p *Processor) reverseSettlement(ctx context.Context, key string, s *medicalSaga) error {
	payload, _ := json.Marshal(map[string]any{"bill_key": key, "setl_id": s.SetlID, "psn_no": s.Bill.PsnNo, "mdtrt_id": s.Bill.MdtrtID})
	ctx, cancel := context.WithTimeout(ctx, p.insurerTimeout())
	defer cancel()
	replies, err := p.send(ctx, s.Plugin, sdk.Message{Type: TypeMedicalSettleReverse, IdempotencyKey: "reverse:" + key, Payload: payload})
	if err != nil {
		return fmt.Errorf("reverse the insurer's settlement: %w", err)
	}
	var r struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if len(replies) != 1 || json.Unmarshal(replies[0].Payload, &r) != nil || r.Status != "reversed" {
		return fmt.Errorf("the insurer did not reverse settlement %s: %s", s.SetlID, r.Reason)
	}
	return nil
}

// recoverMedical closes a bill a stopped request left open: a bill found
// posted is finished; anything else is declined and undone.
func (p *Processor) recoverMedical(ctx context.Context, row store.Saga) error {
	var s medicalSaga
	if err := json.Unmarshal(row.Data, &s); err != nil {
		return fmt.Errorf("saga %s: %w", row.Key, err)
	}
	rec := &sagaRecord{p: p, row: row}
	c := cards.Call{Operator: row.Operator, Role: "plugin", IdempotencyKey: row.Key, RequestHash: s.Hash, Encode: encode}
	if body, ok, err := p.opts.Service.Answer(ctx, row.Operator, row.Key); err != nil {
		return err
	} else if ok {
		var r sdk.MedicalReceipt
		if json.Unmarshal(body, &r) == nil && r.Status == sdk.BillSettled {
			return rec.save(ctx, store.SagaDone, &s)
		}
	} else if body, ok, err := p.opts.Service.Answer(ctx, row.Operator, medPostKey(row.Key)); err != nil {
		return err
	} else if ok && s.readPosting(body) == nil {
		if _, err := p.opts.Service.Record(ctx, c, "medical.bill", s.Bill.Card, s.receipt(sdk.BillSettled)); err != nil {
			return err
		}
		p.log.Info("payments: interrupted medical bill finished", "key", row.Key)
		return rec.save(ctx, store.SagaDone, &s)
	}
	if s.Reason == "" {
		s.Reason = fault.Interrupted
	}
	if err := rec.save(ctx, store.SagaCompensating, &s); err != nil {
		return err
	}
	if _, err := p.opts.Service.Record(ctx, c, "medical.bill", s.Bill.Card, s.receipt(sdk.BillDeclined)); err != nil {
		return err
	}
	if err := p.compensateMedical(ctx, row.Key, &s); err != nil {
		return err
	}
	p.log.Info("payments: interrupted medical bill undone", "key", row.Key, "step", s.Step)
	return rec.save(ctx, store.SagaUndone, &s)
}

// medicalRefund undoes a settled bill, last leg first: the bank card's
// part refunded at the bank, the purses' and the fund's parts reversed in
// the ledger, the insurer's settlement reversed. Each step is keyed, so a
// refund sent again after a failure carries on where it stopped.
func (p *Processor) medicalRefund(ctx context.Context, r request) (ledger.Outcome, error) {
	plugin, c := r.plugin, r.call
	in, err := decode[sdk.MedicalRefund](r.msg)
	if err != nil {
		return ledger.Outcome{}, err
	}
	if out, ok, err := p.answered(ctx, c); err != nil || ok {
		return out, err
	}
	billKey := "bill:" + in.Hospital + ":" + in.BillID
	notFound := fault.E(fault.BillNotFound, "bill_id", fmt.Sprintf("no settled bill %s of %s", in.BillID, in.Hospital))
	if p.opts.Sagas == nil {
		return ledger.Outcome{}, notFound
	}
	row, err := p.opts.Sagas.GetSaga(ctx, c.Operator, billKey)
	if errors.Is(err, store.ErrNotFound) {
		return ledger.Outcome{}, notFound
	} else if err != nil {
		return ledger.Outcome{}, fault.Wrap(fault.Unavailable, err)
	}
	var s medicalSaga
	if err := json.Unmarshal(row.Data, &s); err != nil || row.State != store.SagaDone || s.Payment == "" {
		return ledger.Outcome{}, notFound
	}
	if s.Bank > 0 {
		a, err := p.askBank(ctx, TypeBankCancel, bankKey(plugin, c.IdempotencyKey), map[string]any{
			"authorization_key": bankKey(plugin, billKey), "kind": "refund", "amount": s.Bank, "currency": s.Bill.Currency})
		if err != nil {
			return ledger.Outcome{}, err
		}
		if a.Status != "approved" {
			return ledger.Outcome{}, bankRefusal("refund", a)
		}
	}
	id, _ := strconv.ParseInt(s.Payment, 10, 64)
	rc := c
	rc.IdempotencyKey = "medical-reverse:" + c.IdempotencyKey
	if _, err := p.opts.Service.Reverse(ctx, rc, cards.ReverseRequest{Transfer: id,
		Memo: "refund of bill " + in.BillID}); err != nil && !fault.Is(err, fault.AlreadyReversed) {
		return ledger.Outcome{}, err
	}
	if s.SetlID != "" {
		if err := p.reverseSettlement(ctx, billKey, &s); err != nil {
			return ledger.Outcome{}, fault.Wrap(fault.Unavailable, err)
		}
	}
	s.Refunded = true
	rec := &sagaRecord{p: p, row: row}
	if err := rec.save(ctx, store.SagaDone, &s); err != nil {
		p.log.Warn("payments: bill refunded, saga not marked", "bill", billKey, "err", err)
	}
	if card, err := p.opts.Service.Get(ctx, s.Bill.Card); err == nil {
		bal := card.Balance
		s.Balance = &bal
	}
	return p.opts.Service.Record(ctx, c, "medical.refund", s.Bill.Card, s.receipt(sdk.BillRefunded))
}
