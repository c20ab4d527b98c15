package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"citycard": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI scripts in testdata/script. Each script gets
// $PORT, a free loopback port, and a clean environment without CITYCARD_*.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			port, err := freePort()
			if err != nil {
				return err
			}
			env.Setenv("PORT", strconv.Itoa(port))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor":  cmdWaitFor,
			"exitcode": cmdExitCode,
		},
	})
}

// cmdWaitFor waits until a URL answers 200, for at most 20 seconds:
//
//	waitfor http://127.0.0.1:$PORT/healthz
//
// With !, it waits until the URL stops answering.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitfor URL")
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(args[0])
		up := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			resp.Body.Close()
			last = resp.Status
		} else {
			last = err.Error()
		}
		if up != neg {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if neg {
		ts.Fatalf("%s still answers after 20s", args[0])
	}
	ts.Fatalf("%s did not answer 200 within 20s; last: %s", args[0], last)
}

// cmdExitCode runs a program, like exec, and checks its exit code:
//
//	exitcode 2 citycard operators add --role boss
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %q is not a number", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the script does; on loopback in a test run that is rare.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
