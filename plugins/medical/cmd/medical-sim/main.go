// Command medical-sim runs the medical insurance platform's simulator on
// its own, for trying the medical plugin by hand:
//
//	medical-sim -addr 127.0.0.1:8590 [-seed persons.json]
//	curl -d '{"infno":"1101","msgid":"M1","input":{"certno":"310101199001011234"}}' 127.0.0.1:8590/api/1101
//
// The seed file is {"persons": [{"psn_no", "id_no", "name", "insured",
// "fund_ratio_bps", "acct_ratio_bps"}, ...]}; without one, the simulator
// knows the demo's people. It logs to stderr and stops on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/citycard/citycard/plugins/medical/sim"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8590", "address to listen on")
	seed := flag.String("seed", "", "JSON file of the persons the insurer knows")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := sim.Options{Logger: log}
	if *seed != "" {
		persons, err := sim.LoadSeed(*seed)
		if err != nil {
			fmt.Fprintln(os.Stderr, "medical-sim:", err)
			os.Exit(2)
		}
		opts.Persons = persons
	}
	url, stop, err := sim.New(opts).Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "medical-sim:", err)
		os.Exit(1)
	}
	log.Info("insurer simulator listening", "url", url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop()
}
