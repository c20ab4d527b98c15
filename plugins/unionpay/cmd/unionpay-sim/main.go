// Command unionpay-sim runs the UnionPay switch simulator on its own, for
// trying the unionpay plugin by hand:
//
//	UNIONPAY_SIM_TMK=0123456789ABCDEFFEDCBA9876543210 unionpay-sim -addr 127.0.0.1:9500
//
// then point the plugin's switch_addr at it, with the same master key. Cards
// are approved up to -limit (minor units); -wrong-pin marks a card whose
// authorisations are declined 55; -pin PAN=PIN gives a card a PIN, which
// its purchases, pre-authorisations and balance inquiries must then carry
// (field 52, under the PIN key of the sign-on; three wrong in a row lock it). It logs to stderr (card numbers masked)
// and stops on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9500", "address to listen on")
	tmkHex := flag.String("tmk", os.Getenv("UNIONPAY_SIM_TMK"), "the link's master key in hex (default $UNIONPAY_SIM_TMK)")
	limit := flag.Int64("limit", sim.DefaultLimit, "each card's available limit, in minor units")
	wrongPIN := flag.String("wrong-pin", "", "a card number to decline with 55 (wrong PIN)")
	withPIN := flag.String("pin", "", "PAN=PIN: a card with a PIN to verify")
	flag.Parse()
	tmk, err := cardcrypto.ParseKey(*tmkHex)
	if err != nil || len(tmk) != 16 {
		fmt.Fprintln(os.Stderr, "unionpay-sim: -tmk must be a double-length key in hex")
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sw := sim.New(sim.Options{MasterKey: tmk, DefaultLimit: *limit, Logger: log})
	if *wrongPIN != "" {
		sw.SetCard(*wrongPIN, sim.Card{Limit: *limit, WrongPIN: true})
	}
	if *withPIN != "" {
		pan, pin, ok := strings.Cut(*withPIN, "=")
		if _, err := cardcrypto.ParsePIN(pin); !ok || err != nil {
			fmt.Fprintln(os.Stderr, "unionpay-sim: -pin must be PAN=PIN, with 4 to 12 PIN digits")
			os.Exit(2)
		}
		sw.SetCard(pan, sim.Card{Limit: *limit, PIN: pin})
	}
	listening, stop, err := sw.Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unionpay-sim:", err)
		os.Exit(1)
	}
	log.Info("UnionPay switch simulator listening", "addr", listening, "master_key", tmk)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop()
}
