package unionpay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
	"github.com/moov-io/iso8583"
)

// localDecline is an answer the plugin gives without asking the switch.
func localDecline(rc, maskedPAN string) Authorization {
	return Authorization{Status: Declined, ResponseCode: rc, STAN: "000000", MaskedPAN: maskedPAN}
}

// resolveCard returns the card of a payload: its number and expiry, or a
// token's from the vault (whose expiry then stands). decline is set when
// the card is refused here: a number failing Luhn or an unknown token (14).
func (p *Plugin) resolveCard(number, token, expiry string) (pan cardcrypto.PAN, exp string, decline *Authorization, err error) {
	if token != "" {
		p.mu.Lock()
		v := p.v
		p.mu.Unlock()
		if v == nil {
			d := localDecline(rcInvalidCard, "")
			return pan, "", &d, nil
		}
		e, err := v.card(token)
		if errors.Is(err, errUnknownToken) {
			d := localDecline(rcInvalidCard, "")
			return pan, "", &d, nil
		}
		if err != nil {
			return pan, "", nil, &sdk.Error{Code: sdk.CodeInternal, Message: err.Error()}
		}
		return e.pan, e.expiry, nil, nil
	}
	pan, err = cardcrypto.ParsePAN(number)
	if err != nil {
		// A number failing Luhn never goes to the switch: declined here as
		// the issuer would (14), with nothing to reverse.
		d := localDecline(rcInvalidCard, cardcrypto.MaskPAN(number))
		return pan, "", &d, nil
	}
	return pan, expiry, nil, nil
}

// translatePIN deciphers a pin_block under the PIN zone key. A block that
// does not decipher to a format 0 PIN for this card, or any block when no
// pin_zone_key is configured, is declined 99 here.
func (p *Plugin) translatePIN(block string, pan cardcrypto.PAN) (*cardcrypto.PIN, *Authorization, error) {
	if block == "" {
		return nil, nil, nil
	}
	raw, err := hex.DecodeString(block)
	if err != nil {
		return nil, nil, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: pin_block is not hex", Field: "/payload/pin_block"}
	}
	p.mu.Lock()
	zpk := p.s.zpk
	p.mu.Unlock()
	if zpk == nil {
		p.log.Warn("a PIN block came but no pin_zone_key is configured; declined 99", "pan", pan)
		d := localDecline(rcPINError, pan.Masked())
		return nil, &d, nil
	}
	pin, err := cardcrypto.DecryptPINBlock(zpk, raw, pan)
	if err != nil {
		p.log.Warn("the PIN block does not decipher under the PIN zone key; declined 99", "pan", pan)
		d := localDecline(rcPINError, pan.Masked())
		return nil, &d, nil
	}
	return &pin, nil, nil
}

// entryMode is field 22: manual or swiped, PIN entered or not.
func entryMode(track2 string, pin bool) string {
	switch {
	case track2 != "" && pin:
		return iso.EntrySwipePIN
	case track2 != "":
		return iso.EntrySwipeNoPIN
	case pin:
		return "011" // manual, PIN entered
	}
	return iso.EntryManualNoPIN
}

// cardMessage builds a purchase, pre-authorisation or balance inquiry,
// enciphering the PIN, if any, under the session's PIN key.
func (l *link) cardMessage(kind string, t iso.Terminal, pan cardcrypto.PAN, expiry, track2, entry string, pin *cardcrypto.PIN,
	amount int64, currency string) func(string, time.Time, cardcrypto.Key) (*iso8583.Message, error) {
	return func(stan string, at time.Time, pik cardcrypto.Key) (*iso8583.Message, error) {
		t.Envelope = l.env
		c := iso.Card{PAN: pan, Expiry: expiry, Track2: track2, EntryMode: entry}
		if pin != nil {
			block, err := cardcrypto.EncryptPINBlock(pik, *pin, pan)
			if err != nil {
				return nil, err
			}
			c.PINBlock, c.TripleDESPIN = block, len(pik) > 8
		}
		r := iso.Request{Terminal: t, STAN: stan, Batch: batch, At: at, Card: c, Amount: amount, Currency: currency}
		switch kind {
		case kindPreAuth:
			return iso.NewPreAuth(r)
		case kindBalance:
			return iso.NewBalanceInquiry(r)
		default:
			return iso.NewPurchase(r)
		}
	}
}

// refShape is how each kind that refers to an original goes on the wire:
// MTI, processing code (3), condition code (25), message type (60.1).
var refShape = map[string]struct{ mti, proc, cond, msgType string }{
	kindCompletion:    {"0200", iso.ProcPurchase, iso.CondPreAuth, iso.TypeCompletion},
	kindVoid:          {"0200", iso.ProcVoid, iso.CondNormal, iso.TypeVoid},
	kindRefund:        {"0220", iso.ProcVoid, iso.CondNormal, iso.TypeRefund},
	kindPreAuthCancel: {"0100", iso.ProcVoid, iso.CondPreAuth, iso.TypePreAuthVoid},
}

// refMessage builds a completion, void, refund or pre-authorisation
// cancellation from what the journal keeps: the original is named by
// field 61 (batch, STAN, date) and by its RRN (37, voids and refunds) or
// authorisation code (38, completions and cancellations). The journal
// keeps no card number, so field 2 is left out: the switch knows the card
// from the original.
func (l *link) refMessage(o original) func(string, time.Time, cardcrypto.Key) (*iso8583.Message, error) {
	return func(stan string, at time.Time, _ cardcrypto.Key) (*iso8583.Message, error) {
		shape := refShape[o.kind()]
		m := iso.NewMessage(shape.mti, l.env)
		f60, err := iso.Field60{MessageType: shape.msgType, Batch: batch}.Encode()
		if err != nil {
			return nil, err
		}
		f61, err := iso.Original{Batch: batch, STAN: o.RefSTAN, Date: o.RefDate}.Field61()
		if err != nil {
			return nil, err
		}
		refField, refValue := iso.FieldAuthCode, o.RefAuth
		if o.kind() == kindVoid || o.kind() == kindRefund {
			refField, refValue = iso.FieldRRN, o.RefRRN
		}
		fields := []struct {
			id int
			v  string
		}{
			{iso.FieldProcessingCode, shape.proc}, {iso.FieldAmount, fmt.Sprintf("%012d", o.Amount)},
			{iso.FieldSTAN, stan}, {iso.FieldLocalTime, at.Format("150405")}, {iso.FieldLocalDate, at.Format("0102")},
			{iso.FieldEntryMode, o.EntryMode}, {iso.FieldConditionCode, shape.cond},
			{iso.FieldTerminalID, o.Terminal}, {iso.FieldMerchantID, o.Merchant}, {iso.FieldCurrency, o.Currency},
			{iso.FieldReserved60, f60}, {iso.FieldOriginal, f61}, {refField, refValue},
		}
		for _, f := range fields {
			if f.v == "" {
				continue
			}
			if err := m.Field(f.id, f.v); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
}

// sendAuthorize checks the card locally, translates the PIN and sends the
// purchase or pre-authorisation.
func (p *Plugin) sendAuthorize(l *link, key string, req authorize) (Authorization, error) {
	if req.Token != "" && req.Track2 != "" {
		return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: track2 goes with pan, not token", Field: "/payload/track2"}
	}
	pan, expiry, decline, err := p.resolveCard(req.PAN, req.Token, req.Expiry)
	if err != nil || decline != nil {
		return deref(decline), err
	}
	if req.Track2 != "" {
		t2, err := cardcrypto.ParseTrack2(req.Track2)
		if err != nil || !t2.PAN.Equal(pan) {
			return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: track2 does not hold the card's number", Field: "/payload/track2"}
		}
	}
	pin, decline, err := p.translatePIN(req.PINBlock, pan)
	if err != nil || decline != nil {
		return deref(decline), err
	}
	kind, proc, cond, msgType := kindPurchase, "", "", ""
	if req.Transaction == TransactionPreAuth {
		kind, proc, cond, msgType = kindPreAuth, iso.ProcPreAuth, iso.CondPreAuth, iso.TypePreAuth
	}
	entry := entryMode(req.Track2, pin != nil)
	t := iso.Terminal{TerminalID: padRight(req.Terminal, 8), MerchantID: padRight(req.Merchant, 15)}
	o := original{Kind: kind, Amount: req.Amount, Currency: currencies[req.Currency], Terminal: t.TerminalID, Merchant: t.MerchantID,
		EntryMode: entry, MaskedPAN: pan.Masked(), Proc: proc, Cond: cond, MsgType: msgType}
	return l.transact(request{key: key, o: o,
		build: l.cardMessage(kind, t, pan, expiry, req.Track2, entry, pin, req.Amount, o.Currency)})
}

func deref(a *Authorization) Authorization {
	if a == nil {
		return Authorization{}
	}
	return *a
}

func (p *Plugin) complete(ctx context.Context, m sdk.Message) (Authorization, error) {
	var req complete
	l, key, err := p.prepare(m, &req)
	if err != nil {
		return Authorization{}, err
	}
	return p.once(ctx, key, func() (Authorization, error) {
		return p.sendReferenced(ctx, l, key, kindCompletion, req.AuthorizationKey, req.Amount, req.Currency)
	})
}

func (p *Plugin) cancel(ctx context.Context, m sdk.Message) (Authorization, error) {
	var req cancel
	l, key, err := p.prepare(m, &req)
	if err != nil {
		return Authorization{}, err
	}
	kind := map[string]string{CancelVoid: kindVoid, CancelRefund: kindRefund, CancelPreAuthCancel: kindPreAuthCancel}[req.Kind]
	if kind == "" {
		return Authorization{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: kind must be void, refund or preauth_cancel", Field: "/payload/kind"}
	}
	return p.once(ctx, key, func() (Authorization, error) {
		return p.sendReferenced(ctx, l, key, kind, req.AuthorizationKey, req.Amount, req.Currency)
	})
}

// sendReferenced sends a completion, void, refund or pre-authorisation
// cancellation of the transaction authorised under ref. One of the last
// three sent before without an answer is sent again as it was.
func (p *Plugin) sendReferenced(ctx context.Context, l *link, key, kind, ref string, amount int64, currency string) (Authorization, error) {
	if o, ok := l.j.unanswered(key); ok && resendable(o.kind()) {
		return l.transact(request{key: key, o: o, resend: true, build: l.refMessage(o)})
	}
	if err := p.waitFlight(ctx, ref); err != nil {
		return Authorization{}, err
	}
	if _, err := p.tombstone(ctx, ref); err != nil {
		return Authorization{}, err
	}
	ro, sent := l.j.original(ref)
	rans, answered := l.j.answer(ref)
	if !sent || !answered || rans.Status != Approved {
		// Never authorised here, or the switch never approved it.
		return localDecline(rcNoOriginal, ro.MaskedPAN), nil
	}
	switch rk := ro.kind(); kind {
	case kindCompletion, kindPreAuthCancel:
		if rk != kindPreAuth {
			return localDecline(rcInvalidTxn, ro.MaskedPAN), nil
		}
	default:
		if rk != kindPurchase && rk != kindCompletion {
			return localDecline(rcInvalidTxn, ro.MaskedPAN), nil
		}
	}
	shape := refShape[kind]
	o := original{Kind: kind, Amount: amount, Currency: currencies[currency], Terminal: ro.Terminal, Merchant: ro.Merchant,
		EntryMode: iso.EntryManualNoPIN, MaskedPAN: ro.MaskedPAN, Proc: shape.proc, Cond: shape.cond, MsgType: shape.msgType,
		Ref: ref, RefSTAN: ro.STAN, RefDate: ro.Date, RefRRN: rans.RRN, RefAuth: rans.AuthCode}
	return l.transact(request{key: key, o: o, build: l.refMessage(o)})
}

func (p *Plugin) balance(ctx context.Context, m sdk.Message) (Authorization, error) {
	var req balance
	if m.IdempotencyKey == "" {
		// An inquiry moves no money: one without a key is simply asked once.
		m.IdempotencyKey = "balance-" + sdk.NewID()
	}
	l, key, err := p.prepare(m, &req)
	if err != nil {
		return Authorization{}, err
	}
	return p.once(ctx, key, func() (Authorization, error) {
		pan, expiry, decline, err := p.resolveCard(req.PAN, req.Token, req.Expiry)
		if err != nil || decline != nil {
			return deref(decline), err
		}
		pin, decline, err := p.translatePIN(req.PINBlock, pan)
		if err != nil || decline != nil {
			return deref(decline), err
		}
		cur := req.Currency
		if cur == "" {
			cur = "CNY"
		}
		t := iso.Terminal{TerminalID: l.s.terminal, MerchantID: l.s.merchant}
		if req.Terminal != "" {
			t.TerminalID = padRight(req.Terminal, 8)
		}
		if req.Merchant != "" {
			t.MerchantID = padRight(req.Merchant, 15)
		}
		entry := entryMode("", pin != nil)
		o := original{Kind: kindBalance, Currency: currencies[cur], Terminal: t.TerminalID, Merchant: t.MerchantID,
			EntryMode: entry, MaskedPAN: pan.Masked(), Proc: iso.ProcBalance, Cond: iso.CondNormal, MsgType: iso.TypeBalance}
		return l.transact(request{key: key, o: o, build: l.cardMessage(kindBalance, t, pan, expiry, "", entry, pin, 0, o.Currency)})
	})
}

func (p *Plugin) tokenize(m sdk.Message) (Token, error) {
	var req tokenize
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		return Token{}, &sdk.Error{Code: sdk.CodeSchemaInvalid, Message: "unionpay: " + err.Error(), Field: "/payload"}
	}
	if _, _, err := p.current(); err != nil {
		return Token{}, err
	}
	p.mu.Lock()
	v := p.v
	p.mu.Unlock()
	if v == nil {
		return Token{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: tokens need key_store in the configuration (the vault's top key)", Field: "/key_store"}
	}
	pan, err := cardcrypto.ParsePAN(req.PAN)
	if err != nil {
		return Token{}, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "unionpay: the card number fails its check digit", Field: "/payload/pan"}
	}
	e, err := cardcrypto.ParseExpiry(req.Expiry)
	if err != nil || e.Expired(time.Now()) {
		return Token{}, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "unionpay: the card has expired", Field: "/payload/expiry"}
	}
	token, err := v.tokenize(pan, req.Expiry)
	if err != nil {
		return Token{}, &sdk.Error{Code: sdk.CodeInternal, Message: err.Error()}
	}
	p.log.Info("card tokenised", "pan", pan)
	return Token{Token: token, MaskedPAN: pan.Masked(), Last4: pan.Last4(), Expiry: req.Expiry}, nil
}
