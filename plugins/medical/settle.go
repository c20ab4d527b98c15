package medical

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
)

// settle settles a visit with the insurer (2207), once per bill key:
//
//   - a fresh msgid per attempt, remembered until the attempt's outcome is
//     known;
//   - an answer settles (or, infcode -1, fails with insurer_error);
//   - no answer in time: the attempt is corrected (2601), then tried once
//     more with a new msgid; a second silence is corrected too and the
//     settlement fails with insurer_timeout, the insurer holding nothing;
//   - a correction that gets no answer either leaves the outcome unknown:
//     Handle answers a retryable error, and the redelivery corrects first.
//
// The final answer is journalled: the same key delivered again gets it
// without a second request.
func (st *state) settle(ctx context.Context, log *slog.Logger, in SettleMessage) (string, any, error) {
	e := st.j.op(st.j.settles, in.BillKey)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.answer != nil {
		log.Info("settlement answered again from the journal")
		return TypeSettlement, e.answer, nil
	}
	req := sim.SettleInput{PsnNo: in.PsnNo, MdtrtID: in.MdtrtID, Total: in.Total}
	var out sim.SettleOutput
	msgid, attempt, err := st.sendTwice(ctx, log, e, sim.InfSettle, "settlement", func(msgid string) error {
		out = sim.SettleOutput{}
		return st.ins.call(ctx, sim.InfSettle, msgid, req, &out)
	})
	var r *refused
	switch {
	case errors.Is(err, errCorrected):
		e.answer = Settlement{Status: Failed, Reason: ReasonInsurerTimeout,
			Message: "the insurer answered neither settlement request in time; both were corrected"}
		return TypeSettlement, e.answer, nil
	case errors.As(err, &r):
		log.Info("the insurer refused the settlement", "msgid", msgid, "err_msg", r.msg)
		e.answer = Settlement{Status: Failed, Reason: ReasonInsurerError, Message: r.msg}
		return TypeSettlement, e.answer, nil
	case err != nil:
		return "", nil, err
	}
	if out.FundPay+out.AcctPay+out.CashPay != in.Total || out.FundPay < 0 || out.AcctPay < 0 || out.CashPay < 0 {
		// The insurer booked something the hub cannot charge:
		// reverse it and say so.
		log.Error("the insurer's split does not add up to the bill; reversing the settlement", "setl_id", out.SetlID,
			"fund_pay", out.FundPay, "acct_pay", out.AcctPay, "cash_pay", out.CashPay, "total", in.Total)
		rev := sim.ReverseInput{SetlID: out.SetlID, PsnNo: in.PsnNo, MdtrtID: in.MdtrtID}
		if err := st.ins.call(ctx, sim.InfReverse, st.ins.msgid(), rev, nil); err != nil {
			return "", nil, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true,
				Message: fmt.Sprintf("medical: settlement %s does not add up and reversing it failed: %v", out.SetlID, err)}
		}
		e.answer = Settlement{Status: Failed, Reason: ReasonInsurerError,
			Message: fmt.Sprintf("the insurer's split %d+%d+%d does not add up to the total %d; settlement %s reversed",
				out.FundPay, out.AcctPay, out.CashPay, in.Total, out.SetlID)}
		return TypeSettlement, e.answer, nil
	}
	log.Info("settled with the insurer", "msgid", msgid, "setl_id", out.SetlID, "fund_pay", out.FundPay,
		"acct_pay", out.AcctPay, "cash_pay", out.CashPay, "attempt", attempt)
	e.answer = Settlement{Status: Settled, SetlID: out.SetlID, Split: Split{FundPay: out.FundPay, AcctPay: out.AcctPay, CashPay: out.CashPay}}
	return TypeSettlement, e.answer, nil
}

// reverse reverses a settlement (2208) the same way: a silence is
// corrected and tried once more. The insurer answers a settlement already
// reversed as reversed, so a reversal is idempotent there too.
func (st *state) reverse(ctx context.Context, log *slog.Logger, in SettleReverseMessage) (string, any, error) {
	e := st.j.op(st.j.reverses, in.BillKey)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.answer != nil {
		log.Info("reversal answered again from the journal")
		return TypeSettlementReversal, e.answer, nil
	}
	req := sim.ReverseInput{SetlID: in.SetlID, PsnNo: in.PsnNo, MdtrtID: in.MdtrtID}
	var out sim.ReverseOutput
	msgid, _, err := st.sendTwice(ctx, log, e, sim.InfReverse, "reversal", func(msgid string) error {
		out = sim.ReverseOutput{}
		return st.ins.call(ctx, sim.InfReverse, msgid, req, &out)
	})
	var r *refused
	switch {
	case errors.Is(err, errCorrected):
		e.answer = SettlementReversal{Status: Failed, Reason: ReasonInsurerTimeout,
			Message: "the insurer answered neither reversal request in time; both were corrected"}
		return TypeSettlementReversal, e.answer, nil
	case errors.As(err, &r):
		log.Info("the insurer refused the reversal", "msgid", msgid, "setl_id", in.SetlID, "err_msg", r.msg)
		e.answer = SettlementReversal{Status: Failed, Reason: ReasonInsurerError, Message: r.msg}
		return TypeSettlementReversal, e.answer, nil
	case err != nil:
		return "", nil, err
	}
	log.Info("settlement reversed", "msgid", msgid, "setl_id", in.SetlID, "already", out.Already)
	e.answer = SettlementReversal{Status: Reversed}
	return TypeSettlementReversal, e.answer, nil
}

// errCorrected is sendTwice's answer when neither attempt was answered and
// both were corrected.
var errCorrected = errors.New("the insurer answered neither attempt; both were corrected")

// sendTwice is the exchange settle and reverse share: it corrects what e
// left pending, then sends (under a fresh msgid, pending until answered)
// at most twice, correcting an unanswered attempt before the next. It
// returns the answered msgid and attempt with nil or a *refused,
// errCorrected, or the retryable error of a correction that failed.
func (st *state) sendTwice(ctx context.Context, log *slog.Logger, e *opEntry, infno, what string, send func(msgid string) error) (string, int, error) {
	if err := st.correctPending(ctx, log, e, infno); err != nil {
		return "", 0, err
	}
	for attempt := 1; attempt <= 2; attempt++ {
		msgid := st.ins.msgid()
		e.pending = append(e.pending, msgid)
		err := send(msgid)
		if r := (*refused)(nil); err == nil || errors.As(err, &r) {
			e.pending = slices.DeleteFunc(e.pending, func(s string) bool { return s == msgid })
			return msgid, attempt, err
		}
		log.Warn("the insurer did not answer the "+what+"; correcting it", "msgid", msgid, "attempt", attempt, "err", err)
		if err := st.correctPending(ctx, log, e, infno); err != nil {
			return "", 0, err
		}
	}
	return "", 0, errCorrected
}

// correctPending corrects every request of e whose outcome is unknown.
// One that cannot be corrected stays pending and fails the call with a
// retryable error.
func (st *state) correctPending(ctx context.Context, log *slog.Logger, e *opEntry, infno string) error {
	for len(e.pending) > 0 {
		msgid := e.pending[0]
		out, err := st.ins.correct(ctx, msgid, infno)
		if err != nil {
			log.Error("correction failed; the request's outcome at the insurer is unknown until the redelivery corrects it",
				"omsgid", msgid, "oinfno", infno, "err", err)
			return &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true,
				Message: fmt.Sprintf("medical: correcting insurer request %s (%s) failed: %v", msgid, infno, err)}
		}
		log.Info("corrected", "omsgid", msgid, "oinfno", infno, "applied", out.Applied, "insurer", out.Message)
		e.pending = e.pending[1:]
	}
	return nil
}

// reconcile reads the insurer's totals of a day (3201).
func (st *state) reconcile(ctx context.Context, date string) (Reconciliation, error) {
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return Reconciliation{}, &sdk.Error{Code: sdk.CodeInvalidRequest, Field: "/payload/date", Message: fmt.Sprintf("%q is not a date (YYYY-MM-DD)", date)}
	}
	var out sim.ReconcileOutput
	err := st.ins.call(ctx, sim.InfReconcile, st.ins.msgid(), sim.ReconcileInput{Date: date}, &out)
	var r *refused
	switch {
	case errors.As(err, &r):
		return Reconciliation{}, &sdk.Error{Code: sdk.CodeInvalidRequest, Field: "/payload/date", Message: r.Error()}
	case err != nil:
		return Reconciliation{}, &sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "medical: " + err.Error()}
	}
	return Reconciliation{Date: out.Date, Count: out.Count, Split: Split{FundPay: out.FundPay, AcctPay: out.AcctPay, CashPay: out.CashPay}}, nil
}
