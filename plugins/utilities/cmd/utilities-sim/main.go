// Command utilities-sim runs the city's biller simulator on its own, for
// trying the utilities plugin by hand:
//
//	utilities-sim -addr 127.0.0.1:8480
//	curl 127.0.0.1:8480/billers/water/accounts/10020031/bill
//
// It logs to stderr and stops on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/citycard/citycard/plugins/utilities/sim"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8480", "address to listen on")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	url, stop, err := sim.New(sim.Options{Logger: log}).Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "utilities-sim:", err)
		os.Exit(1)
	}
	log.Info("biller simulator listening", "url", url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop()
}
