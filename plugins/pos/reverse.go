package pos

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// reverse answers a 0400: the terminal did not get (or could not accept)
// the answer to the request with this STAN, and asks for it to be undone.
//
//   - A purchase the hub approved is reversed at the hub (card.reversal.v1),
//     once: a resent 0400 gets the first answer.
//   - A purchase the hub declined, or that the plugin refused, has nothing
//     to undo: 00, as UnionPay hosts answer a reversal of a declined
//     original.
//   - A purchase whose payment the hub never answered is first resolved by
//     sending the same payment again under its idempotency key (the hub
//     answers what it did, or does it now), then reversed if it stands.
//   - A STAN the plugin never saw is asked of the hub all the same (the
//     plugin may have restarted, and the hub's ledger keeps every payment
//     under the key the terminal, batch and STAN derive): 00 if the hub
//     reversed its payment, now or before, and 00 too if it made none
//     (nothing to undo). The STAN is then spent: an original that arrives
//     after its own reversal is refused 94.
//   - A pre-authorisation the hub approved has its hold released
//     (card.void.v1 under its key and "-R"), once, unless a completion
//     took the hold (12: the completion stands) or a cancellation released
//     it already (00). A STAN the plugin never saw with processing code
//     03 is released at the hub the same way: 00, also when the hub holds
//     nothing under that key.
//   - A purchase partly refunded since stands, with its refunds: 12.
//   - A void, refund, completion or pre-authorisation cancellation cannot
//     be undone by the hub, which has no message to charge a card again or
//     to undo a capture: if it was applied it stands, answered 12, and the
//     batch totals show it at settlement; if it was not, 00.
func (h *host) reverse(ctx context.Context, tx *txn, batchNo string) *iso8583.Message {
	stan := str(tx.req, iso.FieldSTAN)
	r := h.j.lookupOrTombstone(tx.t.id, batchNo, stan)
	r.revMu.Lock()
	defer r.revMu.Unlock()
	if r.revAns != nil {
		tx.log.Info("resent reversal answered as before", "batch", batchNo)
		return h.respond(tx, *r.revAns)
	}
	if err := r.wait(ctx); err != nil {
		return h.respond(tx, answer{rc: rcSystemError})
	}
	keep := func(a answer) *iso8583.Message {
		r.revAns = &a
		tx.log.Info("reversal", "batch", batchNo, "reason", str(tx.req, iso.FieldResponseCode), "rc", a.rc, "key", r.key)
		return h.respond(tx, a)
	}
	var st status
	var amount int64
	var pan [32]byte
	var undone bool
	var refunded int64
	h.j.update(func() { st, amount, pan, undone, refunded = r.st, r.amount, r.pan, r.undone, r.refunded })
	if r.kind != kindTombstone && amount != 0 {
		f4 := str(tx.req, iso.FieldAmount)
		if n, err := strconv.ParseInt(f4, 10, 64); f4 != "" && (err != nil || n != amount) {
			return keep(answer{rc: rcOriginalNotFound})
		}
		if f2 := str(tx.req, iso.FieldPAN); f2 != "" {
			p, err := cardcrypto.ParsePAN(f2)
			if err != nil || panHash(p) != pan {
				return keep(answer{rc: rcOriginalNotFound})
			}
		}
	}
	if st == inDoubt {
		st = h.resolve(ctx, tx, r)
	}
	switch r.kind {
	case kindTombstone:
		// The plugin never saw this STAN (lost on the way, or sent to the
		// plugin before it restarted): the hub's ledger, under the key the
		// STAN derives, is the record. A pre-authorisation (processing
		// code 03) has its hold released, if the hub has one; a purchase
		// is reversed.
		preauth := strings.HasPrefix(str(tx.req, iso.FieldProcessingCode), "03")
		a, rst, done := h.undoAtHub(ctx, tx, r, preauth)
		switch {
		case done:
			return keep(answer{rc: rcApproved, rrn: a.rrn})
		case rst == inDoubt:
			return h.respond(tx, answer{rc: a.rc})
		case a.hubCode == sdk.CodeTransferNotFound && tombstonePurchase(tx), a.hubCode == sdk.CodeHoldNotFound && preauth:
			// The hub made no payment or hold under the key: nothing to
			// undo, and the terminal may stop sending the reversal.
			tx.log.Info("reversal of a transaction the hub never applied", "batch", batchNo, "key", r.key)
			return keep(answer{rc: rcApproved})
		}
		return keep(answer{rc: rcOriginalNotFound})
	case kindPurchase:
		switch {
		case st == inDoubt:
			return h.respond(tx, answer{rc: rcSystemError})
		case st == declined || undone:
			return keep(answer{rc: rcApproved})
		case refunded > 0:
			// Partly refunded since: the purchase and its refunds stand.
			tx.log.Warn("a purchase partly refunded cannot be reversed; it stands", "batch", batchNo)
			return keep(answer{rc: rcInvalidTxn})
		}
		a, rst, done := h.undoAtHub(ctx, tx, r, false)
		switch {
		case done:
			h.j.update(func() { r.undone = true })
			return keep(answer{rc: rcApproved, rrn: a.rrn})
		case rst == inDoubt:
			return h.respond(tx, answer{rc: a.rc})
		}
		return keep(answer{rc: rcOriginalNotFound})
	case kindPreAuth:
		if st == inDoubt {
			return h.respond(tx, answer{rc: rcSystemError})
		}
		rc := ""
		h.j.update(func() {
			switch {
			case r.st == declined || r.undone:
				rc = rcApproved
			case r.claimed() && r.claim.kind == kindCompletion:
				rc = registryCode("hold_not_pending")
			case r.claimed() && r.claim.st == approved:
				rc = rcApproved // cancelled: released already
			case r.claimed():
				rc = rcSystemError // a cancellation still in doubt: ask again
			default:
				r.undone = true // no completion may take the hold now
			}
		})
		switch rc {
		case "":
		case rcSystemError:
			return h.respond(tx, answer{rc: rc})
		default:
			if rc != rcApproved {
				tx.log.Warn("a completed pre-authorisation cannot be reversed; the completion stands", "batch", batchNo)
			}
			return keep(answer{rc: rc})
		}
		a, rst, done := h.undoAtHub(ctx, tx, r, true)
		if done {
			// Released now, or already (expired, or released by this
			// same reversal before).
			return keep(answer{rc: rcApproved, rrn: a.rrn})
		}
		// Not released: a resent 0400 tries again under the same key.
		h.j.update(func() { r.undone = false })
		if rst == inDoubt {
			return h.respond(tx, answer{rc: a.rc})
		}
		return keep(answer{rc: rcOriginalNotFound})
	case kindVoid, kindRefund, kindCompletion, kindPreAuthVoid:
		switch st {
		case inDoubt:
			return h.respond(tx, answer{rc: rcSystemError})
		case approved:
			tx.log.Warn("a void, refund, completion or cancellation the hub applied cannot be reversed; it stands", "batch", batchNo)
			return keep(answer{rc: rcInvalidTxn})
		}
		return keep(answer{rc: rcApproved})
	}
	return keep(answer{rc: rcApproved})
}

// tombstonePurchase reports whether a 0400 for a STAN the journal never
// saw reverses a purchase: processing code 00, and 60.1 a purchase's (a
// completion's is 20). For a void or refund the hub's "not found" is no
// proof that nothing was applied (its answer is not a payment).
func tombstonePurchase(tx *txn) bool {
	f60, _ := iso.ParseField60(str(tx.req, iso.FieldReserved60))
	return strings.HasPrefix(str(tx.req, iso.FieldProcessingCode), "00") &&
		(f60.MessageType == iso.TypePurchase || f60.MessageType == "")
}

// reversalOf is the card.reversal.v1 that undoes r, sent under r's key
// and "-R". It depends on r alone, so every path that sends it (the
// terminal's 0400, settleDoubt) sends the same message under that key.
func reversalOf(r *record) []byte {
	b, _ := json.Marshal(sdk.CardReversal{PaymentKey: r.key, Memo: "POS reversal of " + r.key})
	return b
}

// releaseOf is the card.void.v1 that releases the hold of pre-authorisation
// r, sent under r's key and "-R"; like reversalOf, it depends on r alone.
func releaseOf(r *record) []byte {
	b, _ := json.Marshal(sdk.CardVoid{HoldKey: r.key})
	return b
}

// undoAtHub reverses r's payment, or releases its hold when release is
// set, under r's key and "-R" (reversalOf, releaseOf). done reports that
// the hub did so, now or before (already reversed, or the hold no longer
// pending).
func (h *host) undoAtHub(ctx context.Context, tx *txn, r *record, release bool) (a answer, st status, done bool) {
	if release {
		a, st, done = h.holdAtHub(ctx, tx, TypeCardVoid, r.key+"-R", releaseOf(r))
	} else {
		a, st, done = h.reverseAtHub(ctx, tx, r.key+"-R", reversalOf(r))
	}
	return a, st, done || st == approved
}

// resolve sends a hub message whose answer never came once more, under the
// same idempotency key: the hub answers what it did then, or does it now.
// Either way the outcome is known afterwards, unless the hub is still
// unreachable.
func (h *host) resolve(ctx context.Context, tx *txn, r *record) status {
	var payload []byte
	h.j.update(func() { payload = r.payload })
	if payload == nil {
		return inDoubt
	}
	var st status
	var a answer
	switch r.kind {
	case kindPurchase, kindPreAuth:
		a, st = h.pay(ctx, tx, r.typ, r.key, payload)
	case kindCompletion, kindPreAuthVoid:
		a, st, _ = h.holdAtHub(ctx, tx, r.typ, r.key, payload)
	default:
		a, st, _ = h.reverseAtHub(ctx, tx, r.key, payload)
	}
	h.j.update(func() {
		if st != inDoubt {
			r.st, r.payload = st, nil
			if a.rrn != "" {
				r.rrn = a.rrn
			}
		}
		if st == approved && r.kind == kindPreAuthVoid && r.orig != nil {
			r.orig.undone = true
		}
		if st == declined && r.kind == kindRefund && r.orig != nil {
			// A partial refund the hub did not make: its amount can be
			// refunded again.
			r.orig.refunded -= r.amount
		}
	})
	tx.log.Info("resolved a transaction the hub had not answered", "key", r.key, "approved", st == approved, "in_doubt", st == inDoubt)
	return st
}

// Backoff of settleDoubt.
const (
	doubtFirstRetry = 200 * time.Millisecond
	doubtMaxRetry   = 10 * time.Second
)

// settleDoubt makes a transaction the hub never answered definite, in the
// background, until it is or the plugin stops. The terminal was answered
// with a decline (68, 91 or 96), so a purchase must not stand: it is sent
// again under its key (the hub answers what it did, or does it now) and
// reversed if the hub applied it. A void or refund is only resolved: if
// the hub applied it, it stands, and the terminal's totals will show the
// difference at settlement. A reversal (0400) from the terminal meanwhile
// waits for this, or this for it.
func (h *host) settleDoubt(ctx context.Context, tx *txn, r *record) {
	log := tx.log.With("key", r.key)
	for wait := doubtFirstRetry; ; wait = min(2*wait, doubtMaxRetry) {
		select {
		case <-ctx.Done():
			log.Warn("stopping with a transaction still in doubt at the hub")
			return
		case <-time.After(wait):
		}
		if h.settleOnce(ctx, tx, r) {
			return
		}
	}
}

// settleOnce is one attempt of settleDoubt; it reports whether the
// transaction is now definite.
func (h *host) settleOnce(ctx context.Context, tx *txn, r *record) bool {
	r.revMu.Lock()
	defer r.revMu.Unlock()
	var st status
	var undone bool
	h.j.update(func() { st, undone = r.st, r.undone })
	if st == inDoubt {
		if st = h.resolve(ctx, tx, r); st == inDoubt {
			return false
		}
	}
	if r.kind == kindPreAuth {
		return h.releaseDoubt(ctx, tx, r)
	}
	if r.kind != kindPurchase || st != approved || undone {
		return true
	}
	_, rst, done := h.undoAtHub(ctx, tx, r, false)
	switch {
	case done:
		h.j.update(func() { r.undone = true })
		tx.log.Info("reversed a payment the terminal was told had failed", "key", r.key)
		return true
	case rst == inDoubt:
		return false
	}
	tx.log.Error("the hub refuses to reverse a payment the terminal was told had failed", "key", r.key)
	return true
}

// balance answers a balance inquiry from the hub's card_balance query: an
// active card is answered 00 with its available balance (the balance less
// holds) in field 54. A PIN block is decrypted (99 when it cannot be) but
// the PIN is not verified: the hub checks PINs only on payments and holds,
// and has no call that checks a PIN alone.
func (h *host) balance(ctx context.Context, tx *txn) *iso8583.Message {
	f60, _ := iso.ParseField60(str(tx.req, iso.FieldReserved60))
	r, done := h.begin(ctx, tx, f60.Batch, kindBalance)
	if r == nil {
		return done
	}
	pan, rc := h.card(tx)
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	if tx.bank {
		return h.bankBalance(ctx, tx, r, pan)
	}
	if _, rc := h.cityPIN(tx, pan); rc != "" {
		return h.decline(tx, r, rc)
	}
	qctx, cancel := context.WithTimeout(ctx, h.set.hubTimeout)
	defer cancel()
	raw, err := h.hub.Query(qctx, QueryCardBalance, pan.Reveal())
	if err != nil {
		if hasCode(err, sdk.CodeNotFound) || hasCode(err, sdk.CodeCardNotFound) {
			return h.decline(tx, r, rcInvalidCard)
		}
		tx.log.Warn("card balance query failed", "card", pan, "err", err)
		return h.decline(tx, r, errorCode(err))
	}
	var cb sdk.CardBalance
	if err := json.Unmarshal(raw, &cb); err != nil {
		return h.decline(tx, r, rcSystemError)
	}
	switch cb.Status {
	case "active":
	case "frozen":
		rc = registryCode(sdk.CodeCardFrozen)
	case "lost":
		rc = registryCode(sdk.CodeCardLost)
	default: // closed, replaced
		rc = registryCode(sdk.CodeCardClosed)
	}
	if rc == "" && cb.Currency != "" && cb.Currency != "CNY" {
		rc = registryCode(sdk.CodeCurrencyMismatch)
	}
	tx.log.Info("balance inquiry", "card", pan, "status", cb.Status, "rc", rc)
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	available := cb.Available
	h.j.update(func() { r.st = approved })
	r.finish(answer{rc: rcApproved, balance: &available})
	return h.respond(tx, r.ans)
}

// bankBalance answers a bank card's balance inquiry: the hub has the bank
// acquirer ask the issuer (card.balance_inquiry.v1, with the PIN block
// translated to the zone key, under the inquiry's own idempotency key). An
// approved answer gives the balance in field 54; a decline, its reason's
// code. It moves no money, so a hub that does not answer is answered with
// its error's code and nothing is kept in doubt.
func (h *host) bankBalance(ctx context.Context, tx *txn, r *record, pan cardcrypto.PAN) *iso8583.Message {
	q := sdk.CardBalanceInquiry{Card: pan.Reveal(), Expiry: tx.expiry}
	block, rc := h.translatePIN(tx, pan)
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	q.PINBlock = block
	payload, err := json.Marshal(q)
	if err != nil {
		return h.decline(tx, r, rcSystemError)
	}
	h.j.update(func() { r.pan, r.typ = panHash(pan), TypeCardBalanceInquiry })
	res, err := h.submit(ctx, TypeCardBalanceInquiry, r.key, payload)
	if err != nil {
		tx.log.Warn("bank card balance inquiry failed", "card", pan, "err", err)
		return h.decline(tx, r, errorCode(err))
	}
	var hb sdk.BalanceInquiryResult
	if err := json.Unmarshal(res.Body, &hb); err != nil {
		tx.log.Error("the hub's answer does not decode", "key", r.key, "err", err)
		return h.decline(tx, r, rcSystemError)
	}
	if hb.Status != "approved" {
		rc := declineCode(hb.Reason)
		tx.log.Info("bank card balance inquiry", "card", pan, "reason", hb.Reason, "rc", rc)
		return h.decline(tx, r, rc)
	}
	tx.log.Info("bank card balance inquiry", "card", pan, "rc", rcApproved)
	h.j.update(func() { r.st = approved })
	r.finish(answer{rc: rcApproved, balance: hb.Balance})
	return h.respond(tx, r.ans)
}

// releaseDoubt releases the hold of a pre-authorisation the terminal was
// told had failed, unless it was released already; it reports whether the
// pre-authorisation is now definite. Called with r.revMu held.
func (h *host) releaseDoubt(ctx context.Context, tx *txn, r *record) bool {
	release := false
	h.j.update(func() {
		if r.st == approved && !r.undone && !r.claimed() {
			r.undone, release = true, true
		}
	})
	if !release {
		return true
	}
	_, rst, done := h.undoAtHub(ctx, tx, r, true)
	switch {
	case done:
		tx.log.Info("released a hold the terminal was told had failed", "key", r.key)
		return true
	case rst == inDoubt:
		h.j.update(func() { r.undone = false })
		return false
	}
	tx.log.Error("the hub refuses to release a hold the terminal was told had failed", "key", r.key)
	return true
}
