package pos

import (
	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// settle answers a 0500: the terminal's totals of the batch against the
// journal's. Balanced, the batch is closed (00, result 1); not balanced,
// 95 (result 2), and the terminal uploads its transactions (0320).
func (h *host) settle(tx *txn, batchNo string) *iso8583.Message {
	theirs, err := iso.ParseTotals(str(tx.req, iso.FieldAdditionalData))
	if err != nil {
		return h.respond(tx, answer{rc: rcFormatError})
	}
	mine := h.j.totals(tx.t.id, batchNo)
	d, f := theirs.Domestic, theirs.Foreign
	balanced := d.DebitAmount == mine.DebitAmount && d.DebitCount == mine.DebitCount &&
		d.CreditAmount == mine.CreditAmount && d.CreditCount == mine.CreditCount &&
		f.DebitAmount == 0 && f.DebitCount == 0 && f.CreditAmount == 0 && f.CreditCount == 0
	rc, result := rcApproved, iso.SettleBalanced
	if !balanced {
		rc, result = rcNotBalanced, iso.SettleNotBalanced
	}
	out := theirs
	out.Domestic.Result, out.Foreign.Result = result, result
	resp := h.respond(tx, answer{rc: rc})
	if resp == nil {
		return nil
	}
	if f48, err := out.Field48(); err == nil {
		_ = resp.Field(iso.FieldAdditionalData, f48)
	}
	tx.log.Info("settlement", "batch", batchNo, "balanced", balanced,
		"terminal_debits", d.DebitAmount, "terminal_debit_count", d.DebitCount, "terminal_credits", d.CreditAmount, "terminal_credit_count", d.CreditCount,
		"host_debits", mine.DebitAmount, "host_debit_count", mine.DebitCount, "host_credits", mine.CreditAmount, "host_credit_count", mine.CreditCount)
	if balanced {
		h.j.close(tx.t.id, batchNo)
	}
	return resp
}

// batchUpload answers a 0320: each uploaded transaction is compared with
// the journal and the differences logged for the operator (the hub's
// ledger is the record of money; the upload changes none). The last upload
// (60.3 = 202) closes the batch.
func (h *host) batchUpload(tx *txn, f60 iso.Field60) *iso8583.Message {
	entries, err := iso.ParseBatch(str(tx.req, iso.FieldAdditionalData))
	if err != nil {
		return h.respond(tx, answer{rc: rcFormatError})
	}
	for _, e := range entries {
		if !h.j.upload(tx.t.id, f60.Batch, e) {
			tx.log.Warn("uploaded transaction differs from the host's", "batch", f60.Batch, "entry_stan", e.STAN,
				"card", cardcrypto.MaskPAN(e.PAN), "amount", e.Amount)
		}
	}
	resp := h.respond(tx, answer{rc: rcApproved})
	if resp == nil {
		return nil
	}
	// The entries hold card numbers: not sent back.
	resp.UnsetField(iso.FieldAdditionalData)
	if f60.NetworkCode == iso.NetBatchUploadDone {
		matched, differ, missing := h.j.uploadSummary(tx.t.id, f60.Batch)
		tx.log.Info("batch upload finished; batch closed", "batch", f60.Batch, "matched", matched, "differ", differ, "not_uploaded", missing)
		h.j.close(tx.t.id, f60.Batch)
	}
	return resp
}
