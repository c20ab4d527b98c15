package pos

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// host answers the terminals' requests: one configuration, the hub and the
// journal.
type host struct {
	set *settings
	hub sdk.Hub
	j   *journal
	log *slog.Logger
	seq *atomic.Uint64 // retrieval reference numbers of answers without a hub id
	// spawn runs background work that Stop waits for, with a context Stop
	// cancels.
	spawn func(func(ctx context.Context))
}

// txn is one request being answered.
type txn struct {
	req    *iso8583.Message
	mti    string
	t      *terminal
	sess   *session
	macked bool // the request carried a MAC that verified: the answer carries one
	log    *slog.Logger
	// expiry is the card's expiry (YYMM) as read, and bank is set for a bank
	// card taken for the hub's acquirer (see card).
	expiry string
	bank   bool
}

// str is field id of m as text, "" when m lacks it: every field str reads
// is a text field of iso.Spec, which reads empty unless set or decoded.
// (GetFields, to ask whether it is set, would copy the message's fields
// for each of the many fields a request is read by.)
func str(m *iso8583.Message, id int) string {
	s, _ := m.GetString(id)
	return s
}

// exchange answers one request. It returns nil when there is no answer to
// give: the message is not a request, or its answer cannot be built.
func (h *host) exchange(ctx context.Context, req *iso8583.Message) *iso8583.Message {
	mti, _ := req.GetMTI()
	if _, err := iso.ResponseMTI(mti); err != nil {
		h.log.Warn("not a request", "msg", iso.LogValue(req))
		return nil
	}
	tx := &txn{req: req, mti: mti, log: h.log.With("terminal", str(req, iso.FieldTerminalID), "stan", str(req, iso.FieldSTAN), "mti", mti)}
	resp := h.answer(ctx, tx)
	if resp == nil {
		return nil
	}
	if tx.macked {
		if err := iso.SetMAC(resp, tx.t.mac, tx.sess.mac); err != nil {
			tx.log.Error("cannot MAC the answer", "err", err)
			return nil
		}
	}
	tx.log.Info("answered", "msg", iso.LogValue(resp))
	return resp
}

// respond builds the answer with response code rc.
func (h *host) respond(tx *txn, a answer) *iso8583.Message {
	resp, err := iso.NewResponse(tx.req, a.rc)
	if err != nil {
		tx.log.Warn("cannot answer", "err", err)
		return nil
	}
	if a.rrn != "" {
		_ = resp.Field(iso.FieldRRN, a.rrn)
	}
	if a.auth != "" {
		_ = resp.Field(iso.FieldAuthCode, a.auth)
	}
	if a.balance != nil {
		if f54, err := (iso.Balance{AccountType: "00", AmountType: "02", Currency: "156", Amount: *a.balance}).Field54(); err == nil {
			_ = resp.Field(iso.FieldBalance, f54)
		}
	}
	if a.signOnAgain {
		env := iso.EnvelopeOf(resp)
		env.Header.ProcessingRequirement = iso.ProcessSignOnAgain
		iso.SetEnvelope(resp, env)
	}
	return resp
}

func (h *host) answer(ctx context.Context, tx *txn) *iso8583.Message {
	req := tx.req
	tid := str(req, iso.FieldTerminalID)
	t := h.set.terminals[tid]
	if t == nil {
		tx.log.Warn("unknown terminal")
		return h.respond(tx, answer{rc: rcInvalidMerchant})
	}
	tx.t = t
	if f42 := str(req, iso.FieldMerchantID); f42 != "" && f42 != t.acceptorID {
		tx.log.Warn("field 42 is not the terminal's merchant")
		return h.respond(tx, answer{rc: rcInvalidMerchant})
	}
	if tx.mti == "0800" {
		return h.network(tx)
	}
	tx.sess = h.j.session(tid)
	_, hasMAC := req.GetFields()[iso.FieldMAC]
	if tx.sess == nil {
		tx.log.Info("not signed on")
		rc := rcNotSignedOn
		if hasMAC {
			rc = rcMACError
		}
		return h.respond(tx, answer{rc: rc, signOnAgain: true})
	}
	if hasMAC {
		if err := iso.VerifyMAC(req, t.mac, tx.sess.mac); err != nil {
			tx.log.Warn("MAC does not verify", "err", err)
			return h.respond(tx, answer{rc: rcMACError, signOnAgain: true})
		}
		tx.macked = true
	} else if tx.mti == "0100" || tx.mti == "0200" || tx.mti == "0220" || tx.mti == "0400" {
		tx.log.Warn("a money message without a MAC")
		return h.respond(tx, answer{rc: rcMACError})
	}
	f60, err := iso.ParseField60(str(req, iso.FieldReserved60))
	if err != nil {
		return h.respond(tx, answer{rc: rcFormatError})
	}
	proc := str(req, iso.FieldProcessingCode)
	switch {
	case tx.mti == "0500":
		return h.settle(tx, f60.Batch)
	case tx.mti == "0320":
		return h.batchUpload(tx, f60)
	case len(proc) != 6 || len(str(req, iso.FieldSTAN)) != 6:
		return h.respond(tx, answer{rc: rcFormatError})
	}
	if h.j.isClosed(tid, f60.Batch) && tx.mti != "0400" {
		tx.log.Info("batch already settled", "batch", f60.Batch)
		return h.respond(tx, answer{rc: rcBatchClosed, signOnAgain: true})
	}
	switch {
	case tx.mti == "0400":
		return h.reverse(ctx, tx, f60.Batch)
	case tx.mti == "0100" && proc[:2] == "03":
		return h.debit(ctx, tx, f60.Batch, kindPreAuth)
	case (tx.mti == "0100" || tx.mti == "0200") && proc[:2] == "20" && f60.MessageType == iso.TypePreAuthVoid:
		return h.useHold(ctx, tx, f60.Batch, kindPreAuthVoid)
	case tx.mti == "0200" && proc[:2] == "00" && (f60.MessageType == iso.TypeCompletion || str(req, iso.FieldConditionCode) == iso.CondPreAuth):
		return h.useHold(ctx, tx, f60.Batch, kindCompletion)
	case tx.mti == "0200" && proc[:2] == "00":
		return h.debit(ctx, tx, f60.Batch, kindPurchase)
	case tx.mti == "0200" && proc[:2] == "20" && f60.MessageType == iso.TypeVoid:
		return h.undo(ctx, tx, f60.Batch, kindVoid)
	case tx.mti == "0200" && proc[:2] == "20" && f60.MessageType == iso.TypeCompletionVoid:
		// A capture is a posted payment the hub has no message to undo by
		// its key: completions are not voided at the terminal.
		tx.log.Info("void of a completion is not supported")
		return h.respond(tx, answer{rc: rcNotSupported})
	case tx.mti == "0220" && proc[:2] == "20" && f60.MessageType == iso.TypeRefund:
		return h.undo(ctx, tx, f60.Batch, kindRefund)
	case tx.mti == "0200" && proc[:2] == "31":
		return h.balance(ctx, tx)
	}
	tx.log.Info("transaction not taken", "proc", proc, "type", f60.MessageType)
	return h.respond(tx, answer{rc: rcInvalidTxn})
}

// network answers 0800: sign-on, sign-off and echo.
func (h *host) network(tx *txn) *iso8583.Message {
	f60, err := iso.ParseField60(str(tx.req, iso.FieldReserved60))
	if err != nil {
		return h.respond(tx, answer{rc: rcFormatError})
	}
	switch f60.NetworkCode {
	case iso.NetSignOff:
		h.j.signOff(tx.t.id)
		return h.respond(tx, answer{rc: rcApproved})
	case iso.NetEcho:
		return h.respond(tx, answer{rc: rcApproved})
	case iso.NetSignOnSingle, iso.NetSignOnDouble, iso.NetSignOnWithData:
	default:
		return h.respond(tx, answer{rc: rcInvalidTxn})
	}
	pinLen, macLen := 16, 8
	if f60.NetworkCode == iso.NetSignOnSingle {
		pinLen = 8
	} else if tx.t.mac == iso.MACX919 {
		macLen = 16
	}
	w := cardcrypto.WorkingKeys{PIN: newKey(pinLen), MAC: newKey(macLen)}
	if f60.NetworkCode == iso.NetSignOnWithData {
		w.Data = newKey(16)
	}
	f62, err := cardcrypto.BuildSignOnKeys(tx.t.master, w)
	if err != nil {
		tx.log.Error("cannot wrap the working keys", "err", err)
		return h.respond(tx, answer{rc: rcSystemError})
	}
	s := &session{pin: w.PIN, mac: w.MAC, at: time.Now()}
	b := h.j.signOn(tx.t.id, s, f60.Batch)
	resp, err := iso.NewSignOnResponse(tx.req, rcApproved, b, time.Now(), f62)
	if err != nil {
		tx.log.Error("cannot answer the sign-on", "err", err)
		return nil
	}
	tx.log.Info("signed on", "batch", b, "pin_key", w.PIN, "mac_key", w.MAC, "mac", tx.t.mac.String())
	return resp
}

// newKey makes a random DES key of n bytes with odd parity.
func newKey(n int) cardcrypto.Key {
	k := make(cardcrypto.Key, n)
	if _, err := rand.Read(k); err != nil {
		panic("pos: no randomness for working keys: " + err.Error())
	}
	return cardcrypto.AdjustOddParity(k)
}

// card reads and checks the card: field 2 or track 2, Luhn, expiry, range.
func (h *host) card(tx *txn) (cardcrypto.PAN, string) {
	req := tx.req
	var pan cardcrypto.PAN
	var expiry string
	var track *cardcrypto.Track2
	if f35 := str(req, iso.FieldTrack2); f35 != "" {
		tr, err := cardcrypto.ParseTrack2(f35)
		if err != nil {
			return pan, rcInvalidCard
		}
		pan, expiry, track = tr.PAN, tr.Expiry.YYMM(), &tr
	}
	if f2 := str(req, iso.FieldPAN); f2 != "" {
		p, err := cardcrypto.ParsePAN(f2)
		if err != nil || (!pan.IsZero() && !p.Equal(pan)) {
			return pan, rcInvalidCard
		}
		pan = p
	}
	if pan.IsZero() {
		return pan, rcFormatError
	}
	if f14 := str(req, iso.FieldExpiry); f14 != "" {
		expiry = f14
	}
	if expiry != "" {
		e, err := cardcrypto.ParseExpiry(expiry)
		if err != nil {
			return pan, rcFormatError
		}
		if e.Expired(time.Now()) {
			return pan, rcExpiredCard
		}
	}
	tx.expiry = expiry
	if track != nil {
		if rc := h.checkTrack(tx, *track); rc != "" {
			return pan, rc
		}
	}
	if !h.set.cityCard(pan) {
		// A bank card: taken, when bank_cards is set, for every
		// transaction the host takes; the hub has its bank acquirer answer.
		if !h.set.bankCards {
			return pan, rcNoSuchIssuer
		}
		tx.bank = true
	}
	return pan, ""
}

// checkTrack applies what a swiped card's track 2 says: a service code
// that forbids the purchase (ATM-only, cash-only) is refused 62, one that
// needs a PIN is refused 55 without one, and a city card's CVV must verify
// under the city's keys (05).
func (h *host) checkTrack(tx *txn, tr cardcrypto.Track2) string {
	sc := tr.ServiceCode
	if sc.ATMOnly() || sc.CashOnly() {
		tx.log.Info("service code forbids the transaction", "card", tr.PAN, "service_code", string(sc))
		return rcRestrictedCard
	}
	if block, err := tx.req.GetBytes(iso.FieldPINBlock); sc.PINRequired() && (err != nil || len(block) == 0) {
		tx.log.Info("service code needs a PIN", "card", tr.PAN, "service_code", string(sc))
		return rcIncorrectPIN
	}
	if h.set.cvk == nil || !h.set.cityCard(tr.PAN) {
		return ""
	}
	disc := tr.Discretionary.Reveal()
	if len(disc) < 3 || cardcrypto.VerifyCVV(h.set.cvk, tr.PAN, tr.Expiry.YYMM(), sc, disc[:3]) != nil {
		tx.log.Warn("city card's CVV does not verify", "card", tr.PAN)
		return rcDoNotHonour
	}
	return ""
}

func amountOf(req *iso8583.Message) (int64, string) {
	f4 := str(req, iso.FieldAmount)
	n, err := strconv.ParseInt(f4, 10, 64)
	if err != nil || n <= 0 {
		return 0, rcInvalidAmount
	}
	if c := str(req, iso.FieldCurrency); c != "" && c != "156" {
		return 0, registryCode(sdk.CodeCurrencyMismatch)
	}
	return n, ""
}

// fingerprint is what a request asks, without its PIN block: the same
// request sent again has the same fingerprint. The terminal's local time
// and date are in it, so a terminal that lost its STAN counter and numbers
// a new purchase like an old one is refused 94, not given the old answer.
func fingerprint(req *iso8583.Message) [32]byte {
	mti, _ := req.GetMTI()
	h := sha256.New()
	for _, v := range []string{mti, str(req, iso.FieldProcessingCode), str(req, iso.FieldAmount), str(req, iso.FieldPAN),
		str(req, iso.FieldTrack2), str(req, iso.FieldLocalTime), str(req, iso.FieldLocalDate), str(req, iso.FieldOriginal), str(req, iso.FieldRRN), str(req, iso.FieldAuthCode), str(req, iso.FieldReserved60), str(req, iso.FieldCurrency)} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	var fp [32]byte
	copy(fp[:], h.Sum(nil))
	return fp
}

// rrnOf makes the retrieval reference number of an answer from the hub's
// transfer id, so a receipt leads to the hub's record; without one, from
// the plugin's own sequence.
func (h *host) rrnOf(id string) string {
	if id != "" && len(id) <= 12 && strings.Trim(id, "0123456789") == "" {
		return strings.Repeat("0", 12-len(id)) + id
	}
	return fmt.Sprintf("9%011d", h.seq.Add(1)%100_000_000_000)
}

func (h *host) submit(ctx context.Context, typ, key string, payload []byte) (sdk.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.set.hubTimeout)
	defer cancel()
	return h.hub.Submit(ctx, sdk.Message{Type: typ, IdempotencyKey: key, Payload: payload})
}

// begin enters the request in the journal; a resend is answered as the
// first time, a different request under the same STAN with 94.
func (h *host) begin(ctx context.Context, tx *txn, batchNo string, k kind) (*record, *iso8583.Message) {
	r, existing, conflict := h.j.begin(tx.t.id, batchNo, str(tx.req, iso.FieldSTAN), k, fingerprint(tx.req))
	if conflict {
		tx.log.Info("STAN already used for another request", "batch", batchNo)
		return nil, h.respond(tx, answer{rc: rcDuplicate})
	}
	if existing {
		if err := r.wait(ctx); err != nil {
			return nil, nil
		}
		tx.log.Info("resent request answered as before", "batch", batchNo)
		return nil, h.respond(tx, r.ans)
	}
	return r, nil
}

// decline finishes a record refused by the plugin itself.
func (h *host) decline(tx *txn, r *record, rc string) *iso8583.Message {
	h.j.update(func() { r.st = declined })
	r.finish(answer{rc: rc})
	return h.respond(tx, r.ans)
}

// debit answers a purchase (0200, card.payment.v1) or a
// pre-authorisation (0100, card.hold.v1, whose idempotency key then names
// the hold): the same card, amount and PIN checks, the same answer. A city
// card's PIN goes to the hub in clear, which checks it; a bank card's goes
// as a PIN block under the zone key (translatePIN), with its expiry.
func (h *host) debit(ctx context.Context, tx *txn, batchNo string, k kind) *iso8583.Message {
	what, typ := "purchase", TypeCardPayment
	if k == kindPreAuth {
		what, typ = "pre-authorisation", TypeCardHold
	}
	r, done := h.begin(ctx, tx, batchNo, k)
	if r == nil {
		return done
	}
	pan, rc := h.card(tx)
	if rc != "" {
		tx.log.Info("card refused", "card", pan, "rc", rc)
		return h.decline(tx, r, rc)
	}
	amount, rc := amountOf(tx.req)
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	p := sdk.CardPayment{Card: pan.Reveal(), Merchant: tx.t.merchant, Terminal: tx.t.id, Amount: amount, Currency: "CNY"}
	if tx.bank {
		if tx.expiry == "" {
			return h.decline(tx, r, rcFormatError)
		}
		p.Expiry = tx.expiry
		block, rc := h.translatePIN(tx, pan)
		if rc != "" {
			return h.decline(tx, r, rc)
		}
		p.PINBlock = block
	} else {
		pin, rc := h.cityPIN(tx, pan)
		if rc != "" {
			return h.decline(tx, r, rc)
		}
		p.PIN = pin
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return h.decline(tx, r, rcSystemError)
	}
	h.j.update(func() { r.amount, r.pan, r.date, r.typ = amount, panHash(pan), str(tx.req, iso.FieldLocalDate), typ })
	a, st := h.pay(ctx, tx, typ, r.key, payload)
	h.conclude(tx, r, a, st, payload, nil)
	tx.log.Info(what, "card", pan, "amount", amount, "rc", a.rc, "key", r.key)
	return h.respond(tx, a)
}

// conclude records the hub's answer a (st) to r, sent as payload, and runs
// also, if given, in the same journal update; a transaction the hub left
// in doubt keeps its payload and is settled in the background.
func (h *host) conclude(tx *txn, r *record, a answer, st status, payload []byte, also func()) {
	h.j.update(func() {
		r.st, r.rrn = st, a.rrn
		if st == inDoubt {
			r.payload = payload
		}
		if also != nil {
			also()
		}
	})
	r.finish(a)
	if st == inDoubt {
		h.spawn(func(ctx context.Context) { h.settleDoubt(ctx, tx, r) })
	}
}

// original reads what a void, refund, completion or cancellation names:
// its card and amount, and the original (field 61), which must be a
// journal record of kind want, once that is answered. notFound is logged
// when it is not.
func (h *host) original(ctx context.Context, tx *txn, want kind, notFound string) (orig iso.Original, pan cardcrypto.PAN, amount int64, o *record, rc string) {
	orig, err := iso.ParseOriginal(str(tx.req, iso.FieldOriginal))
	if err != nil {
		return orig, pan, 0, nil, rcFormatError
	}
	if pan, rc = h.card(tx); rc != "" {
		return orig, pan, 0, nil, rc
	}
	if amount, rc = amountOf(tx.req); rc != "" {
		return orig, pan, 0, nil, rc
	}
	o = h.j.lookup(tx.t.id, orig.Batch, orig.STAN)
	if o == nil || o.kind != want {
		tx.log.Info(notFound, "orig_batch", orig.Batch, "orig_stan", orig.STAN)
		return orig, pan, amount, nil, rcOriginalNotFound
	}
	if err := o.wait(ctx); err != nil {
		return orig, pan, amount, nil, rcSystemError
	}
	return orig, pan, amount, o, ""
}

// cityPIN deciphers a city card's PIN block (field 52), if the request has
// one, under the session's PIN key: the clear PIN, which the hub checks. A
// block that does not decipher is rc 99; a PIN that is not six digits,
// pin_invalid_format's code.
func (h *host) cityPIN(tx *txn, pan cardcrypto.PAN) (pin, rc string) {
	block, err := tx.req.GetBytes(iso.FieldPINBlock)
	if err != nil || len(block) == 0 {
		return "", ""
	}
	p, err := cardcrypto.DecryptPINBlock(tx.sess.pin, block, pan)
	if err != nil {
		tx.log.Info("PIN block cannot be decrypted", "card", pan)
		return "", rcPINError
	}
	if len(p.Reveal()) != 6 {
		return "", registryCode("pin_invalid_format")
	}
	return p.Reveal(), ""
}

// translatePIN translates a bank card's PIN block (field 52), if the
// request has one: deciphered under the session's PIN key as an ISO 9564
// format 0 block and enciphered again under the PIN zone key shared with
// the bank acquirer, in upper-case hex. The clear PIN goes no further. A
// block that does not decipher to a format 0 block is rc 99; a PIN with
// no zone key to translate it to, 40.
func (h *host) translatePIN(tx *txn, pan cardcrypto.PAN) (block, rc string) {
	in, err := tx.req.GetBytes(iso.FieldPINBlock)
	if err != nil || len(in) == 0 {
		return "", ""
	}
	if h.set.zoneKey == nil {
		tx.log.Info("a bank card's PIN cannot be translated: no pin_zone_key", "card", pan)
		return "", rcNotSupported
	}
	pin, err := cardcrypto.DecryptPINBlock(tx.sess.pin, in, pan)
	if err != nil {
		tx.log.Info("PIN block cannot be decrypted", "card", pan)
		return "", rcPINError
	}
	out, err := cardcrypto.EncryptPINBlock(h.set.zoneKey, pin, pan)
	if err != nil {
		tx.log.Error("cannot encipher the PIN block under the zone key", "card", pan)
		return "", rcSystemError
	}
	return strings.ToUpper(hex.EncodeToString(out)), ""
}

// pay submits a card payment or hold (typ) and reads the hub's answer.
func (h *host) pay(ctx context.Context, tx *txn, typ, key string, payload []byte) (answer, status) {
	res, err := h.submit(ctx, typ, key, payload)
	if err != nil {
		if inDoubtErr(err) {
			tx.log.Warn("the hub did not answer the payment", "key", key, "err", err)
			return answer{rc: errorCode(err)}, inDoubt
		}
		tx.log.Info("the hub refused the payment", "key", key, "err", err)
		return answer{rc: errorCode(err)}, declined
	}
	var hp sdk.PaymentResult
	if err := json.Unmarshal(res.Body, &hp); err != nil {
		tx.log.Error("the hub's answer does not decode", "key", key, "err", err)
		return answer{rc: rcSystemError}, inDoubt
	}
	if hp.Status != "approved" {
		return answer{rc: declineCode(hp.Reason), balance: nil}, declined
	}
	rrn := h.rrnOf(hp.ID)
	return answer{rc: rcApproved, rrn: rrn, auth: rrn[6:], balance: hp.Balance}, approved
}

// undo answers a void (0200) or a refund (0220): the hub reverses the
// original purchase (card.reversal.v1 with kind "void" or "refund"). A void
// is for the purchase's whole amount, and none of it refunded; a refund
// for the whole amount undoes the purchase, one for less (a partial
// refund, with "amount") credits that back, as long as the refunds
// together do not exceed the purchase (64).
func (h *host) undo(ctx context.Context, tx *txn, batchNo string, k kind) *iso8583.Message {
	r, done := h.begin(ctx, tx, batchNo, k)
	if r == nil {
		return done
	}
	what := map[kind]string{kindVoid: "void", kindRefund: "refund"}[k]
	orig, pan, amount, o, rc := h.original(ctx, tx, kindPurchase, what+": no such original")
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	if k == kindVoid && h.j.isClosed(tx.t.id, orig.Batch) {
		tx.log.Info("void of a settled purchase: refund it instead", "orig_batch", orig.Batch)
		return h.decline(tx, r, rcInvalidTxn)
	}
	f37 := str(tx.req, iso.FieldRRN)
	var oamount, orefunded int64
	partial := false
	h.j.update(func() {
		oamount, orefunded = o.amount, o.refunded
		switch {
		case o.st != approved || o.pan != panHash(pan) || (f37 != "" && f37 != o.rrn):
			rc = rcOriginalNotFound
		case o.undone:
			rc = registryCode(sdk.CodeAlreadyReversed)
		case k == kindVoid && o.refunded > 0:
			// Part refunded already: what is left is refunded, not voided.
			rc = rcOriginalAmount
		case k == kindVoid && amount != o.amount:
			rc = rcOriginalAmount
		case k == kindRefund && amount > o.amount-o.refunded:
			rc = rcOriginalAmount
		case k == kindRefund && (amount < o.amount || o.refunded > 0):
			// A partial refund: what it credits is kept aside at once,
			// so refunds asked together cannot exceed the payment.
			partial = true
			o.refunded += amount
			r.orig = o
		}
		if rc == "" {
			r.amount, r.pan, r.typ = amount, o.pan, TypeCardReversal
		}
	})
	if rc != "" {
		tx.log.Info(what+" refused", "orig_batch", orig.Batch, "orig_stan", orig.STAN, "amount", amount, "original", oamount, "refunded", orefunded, "rc", rc)
		return h.decline(tx, r, rc)
	}
	rv := sdk.CardReversal{PaymentKey: o.key, Memo: fmt.Sprintf("POS %s %s of batch %s STAN %s", tx.t.id, what, orig.Batch, orig.STAN), Kind: what}
	if partial {
		rv.Amount = amount
	}
	payload, err := json.Marshal(rv)
	if err != nil {
		h.j.update(func() {
			if partial {
				o.refunded -= amount
			}
		})
		return h.decline(tx, r, rcSystemError)
	}
	a, st, already := h.reverseAtHub(ctx, tx, r.key, payload)
	h.conclude(tx, r, a, st, payload, func() {
		switch {
		case st == approved && !partial:
			o.undone = true
		case st == declined && partial:
			o.refunded -= amount
		}
		if already {
			o.undone = true
		}
	})
	tx.log.Info(what, "card", pan, "amount", amount, "orig_stan", orig.STAN, "rc", a.rc, "key", r.key)
	return h.respond(tx, a)
}

// reverseAtHub submits a card.reversal.v1 and reads the answer. A payment
// the hub already reversed counts as reversed.
func (h *host) reverseAtHub(ctx context.Context, tx *txn, key string, payload []byte) (a answer, st status, alreadyReversed bool) {
	res, err := h.submit(ctx, TypeCardReversal, key, payload)
	if err != nil {
		if inDoubtErr(err) {
			tx.log.Warn("the hub did not answer the reversal", "key", key, "err", err)
			return answer{rc: errorCode(err)}, inDoubt, false
		}
		tx.log.Info("the hub refused the reversal", "key", key, "err", err)
		return answer{rc: errorCode(err), hubCode: sdk.AsError(err).Code}, declined, hasCode(err, sdk.CodeAlreadyReversed)
	}
	var rv struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(res.Body, &rv)
	rrn := h.rrnOf(rv.ID)
	return answer{rc: rcApproved, rrn: rrn, auth: rrn[6:]}, approved, false
}

// useHold answers a pre-authorisation completion (0200, card.capture.v1
// for the completion's amount, at most the hold's) or cancellation (0100,
// card.void.v1 for the whole hold). The pre-authorisation is found in the
// journal by field 61 (batch, STAN, and its date when given) and must be
// for the same card and, when field 38 is given, carry its authorisation
// code; its idempotency key names the hold at the hub.
func (h *host) useHold(ctx context.Context, tx *txn, batchNo string, k kind) *iso8583.Message {
	r, done := h.begin(ctx, tx, batchNo, k)
	if r == nil {
		return done
	}
	what, typ := "completion", TypeCardCapture
	if k == kindPreAuthVoid {
		what, typ = "pre-authorisation cancellation", TypeCardVoid
	}
	orig, pan, amount, o, rc := h.original(ctx, tx, kindPreAuth, what+": no such pre-authorisation")
	if rc != "" {
		return h.decline(tx, r, rc)
	}
	f38 := str(tx.req, iso.FieldAuthCode)
	var oamount int64
	h.j.update(func() {
		oamount = o.amount
		switch {
		case o.st != approved || o.pan != panHash(pan) || (f38 != "" && f38 != o.ans.auth) ||
			(orig.Date != "" && o.date != "" && orig.Date != o.date):
			rc = rcOriginalNotFound
		case o.undone || o.claimed():
			// Cancelled, reversed, completed, or being so.
			rc = registryCode("hold_not_pending")
		case k == kindCompletion && amount > o.amount:
			rc = registryCode("capture_exceeds_hold")
		case k == kindPreAuthVoid && amount != o.amount:
			rc = rcOriginalAmount
		default:
			o.claim, r.orig = r, o
			r.amount, r.pan, r.typ = amount, o.pan, typ
		}
	})
	if rc != "" {
		tx.log.Info(what+" refused", "orig_batch", orig.Batch, "orig_stan", orig.STAN, "amount", amount, "hold", oamount, "rc", rc)
		return h.decline(tx, r, rc)
	}
	use := sdk.CardCapture{HoldKey: o.key}
	if k == kindCompletion {
		use.Amount, use.Currency = amount, "CNY"
	}
	payload, err := json.Marshal(use)
	if err != nil {
		return h.decline(tx, r, rcSystemError)
	}
	a, st, _ := h.holdAtHub(ctx, tx, typ, r.key, payload)
	h.conclude(tx, r, a, st, payload, func() {
		if st == approved && k == kindPreAuthVoid {
			o.undone = true
		}
	})
	tx.log.Info(what, "card", pan, "amount", amount, "hold", oamount, "orig_stan", orig.STAN, "rc", a.rc, "key", r.key)
	return h.respond(tx, a)
}

// holdAtHub submits a card.capture.v1 or card.void.v1 and reads the
// answer; notPending reports the hub's hold_not_pending (the hold was
// already captured, released or expired).
func (h *host) holdAtHub(ctx context.Context, tx *txn, typ, key string, payload []byte) (a answer, st status, notPending bool) {
	res, err := h.submit(ctx, typ, key, payload)
	if err != nil {
		if inDoubtErr(err) {
			tx.log.Warn("the hub did not answer", "type", typ, "key", key, "err", err)
			return answer{rc: errorCode(err)}, inDoubt, false
		}
		tx.log.Info("the hub refused", "type", typ, "key", key, "err", err)
		return answer{rc: errorCode(err), hubCode: sdk.AsError(err).Code}, declined, hasCode(err, "hold_not_pending")
	}
	var hh sdk.HoldResult
	if err := json.Unmarshal(res.Body, &hh); err != nil {
		tx.log.Error("the hub's answer does not decode", "type", typ, "key", key, "err", err)
		return answer{rc: rcSystemError}, inDoubt, false
	}
	// A capture's RRN leads to its posted transfer; a void posts none.
	rrn := h.rrnOf(hh.Transfer)
	return answer{rc: rcApproved, rrn: rrn, auth: rrn[6:]}, approved, false
}
