// Command pos-sim is a POS terminal at the command line: it signs on to
// the pos plugin's front end and runs the transactions it is given, in
// order, printing each answer.
//
//	pos-sim -addr 127.0.0.1:9400 -terminal POS00001 -merchant M-POS-SHOP \
//	    -card 3100990000000013 -pin 123456 purchase:2580 void balance settle
//
// Steps: purchase:FEN, void (the last purchase), refund (the last purchase,
// in full), refund:FEN, preauth:FEN (a pre-authorisation), complete (the
// last pre-authorisation, in full), complete:FEN, cancel (the last
// pre-authorisation), balance, settle, upload (batch upload), reversal
// (send a reversal owed after a request got no answer). refund:FEN more than once refunds
// the last purchase in parts. A bank card (with the plugin's bank_cards
// set) needs -expiry. The terminal master key comes from -tmk or the
// environment variable POS_SIM_TMK, in hex.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pos-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9400", "the pos plugin's terminal front end, host:port")
	tid := flag.String("terminal", "POS00001", "terminal id (field 41), 8 characters")
	merchant := flag.String("merchant", "M-POS-SHOP", "merchant id (field 42), padded with spaces to 15 characters")
	tmkHex := flag.String("tmk", os.Getenv("POS_SIM_TMK"), "terminal master key in hex (default $POS_SIM_TMK)")
	card := flag.String("card", "", "card number")
	pin := flag.String("pin", "", "PIN (6 digits for a city card, 4 to 12 for a bank card), or none")
	expiry := flag.String("expiry", "", "the card's expiry, YYMM (field 14): a bank card needs it")
	mac := flag.String("mac", "ecb", "MAC algorithm: ecb or x919")
	batch := flag.String("batch", "000001", "the terminal's batch number")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for each answer")
	flag.Parse()
	if len(*merchant) > 15 {
		return errors.New("-merchant is at most 15 characters")
	}
	tmk, err := cardcrypto.ParseKey(*tmkHex)
	if err != nil {
		return fmt.Errorf("-tmk: %w", err)
	}
	cfg := sim.Config{Addr: *addr, TerminalID: *tid, MerchantID: *merchant + strings.Repeat(" ", 15-len(*merchant)),
		MasterKey: tmk, Timeout: *timeout, Batch: *batch}
	if *mac == "x919" {
		cfg.MAC = iso.MACX919
	}
	t, err := sim.New(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	ctx := context.Background()
	rc, err := t.SignOn(ctx)
	if err != nil {
		return fmt.Errorf("sign-on: %w", err)
	}
	fmt.Printf("sign-on: %s, batch %s\n", rc, t.Batch())
	if rc != "00" {
		return nil
	}
	c := sim.Card{PAN: *card, PIN: *pin, Expiry: *expiry}
	var last, lastHold sim.Result
	for _, step := range flag.Args() {
		name, arg, _ := strings.Cut(step, ":")
		amount, _ := strconv.ParseInt(arg, 10, 64)
		var r sim.Result
		switch name {
		case "purchase":
			if r, err = t.Purchase(ctx, c, amount); err == nil && r.Approved() {
				last = r
			}
		case "void":
			r, err = t.Void(ctx, last, c)
		case "refund":
			if amount == 0 {
				amount = last.Amount
			}
			r, err = t.Refund(ctx, last, c, amount)
		case "preauth":
			if r, err = t.PreAuth(ctx, c, amount); err == nil && r.Approved() {
				lastHold = r
			}
		case "complete":
			if amount == 0 {
				amount = lastHold.Amount
			}
			r, err = t.Complete(ctx, lastHold, c, amount)
		case "cancel":
			r, err = t.CancelPreAuth(ctx, lastHold, c)
		case "balance":
			r, err = t.Balance(ctx, c)
		case "settle":
			rc, err := t.Settle(ctx)
			fmt.Printf("settle: %s %v\n", rc, errOrNil(err))
			continue
		case "upload":
			err := t.UploadBatch(ctx)
			fmt.Printf("upload: %v\n", errOrNil(err))
			continue
		case "reversal":
			rc, err := t.SendReversal(ctx)
			fmt.Printf("reversal: %q %v\n", rc, errOrNil(err))
			continue
		default:
			return fmt.Errorf("unknown step %q", step)
		}
		if err != nil {
			fmt.Printf("%s: %v (reversal owed: %v)\n", step, err, t.PendingReversal())
			continue
		}
		bal := ""
		if r.Balance != nil {
			bal = fmt.Sprintf(" balance %d", *r.Balance)
		}
		fmt.Printf("%s: %s STAN %s RRN %s auth %s%s\n", step, r.RC, r.STAN, r.RRN, r.AuthCode, bal)
	}
	return nil
}

func errOrNil(err error) any {
	if err == nil {
		return "ok"
	}
	return err
}
