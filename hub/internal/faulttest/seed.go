// Package faulttest is test support for the hub's fault suite: a TCP fault
// proxy to put between the hub and PostgreSQL, a load generator that keeps
// a client-side history of payments and balance reads, a porcupine model
// that checks that history, the end-state checks every fault is followed
// by, and the seeds and durations that make a run replayable.
package faulttest

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// Environment variables of the fault suite.
const (
	// SeedEnv replays a run: the seed its log printed.
	SeedEnv = "CITYCARD_FAULT_SEED"
	// SoakEnv turns the short run into a soak of the given duration
	// ("10m"): faults are injected until it has passed.
	SoakEnv = "CITYCARD_FAULT_SOAK"
)

// Seed returns the seed of a test's fault schedule, from CITYCARD_FAULT_SEED
// when set, and logs it so that a failure can be replayed. The schedule
// (which fault, when, for how long) follows from the seed; the interleaving
// of requests does not, since the hub and the database run in real time.
func Seed(t testing.TB) uint64 {
	t.Helper()
	var seed uint64
	if v := os.Getenv(SeedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
		seed = s
	} else {
		seed = rand.Uint64()
	}
	t.Logf("fault seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	return seed
}

// Rand is a generator for the schedule, from a seed.
func Rand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// Soak returns the soak duration from CITYCARD_FAULT_SOAK, or zero for a
// short run.
func Soak(t testing.TB) time.Duration {
	t.Helper()
	v := os.Getenv(SoakEnv)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 10m", SoakEnv, v)
	}
	return d
}

// Between is a duration drawn uniformly from [lo, hi].
func Between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
