package transit_test

import (
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/transit/sim"
)

// phaseTimeout bounds how long a fleet test waits for one phase's
// condition; a phase normally takes well under a second.
const phaseTimeout = 15 * time.Second

// waitCounts polls the fleet's counters until ok holds for them, so a test
// moves from one phase to the next on what the fleet has done, not on a
// scripted sleep. It fails the test after phaseTimeout.
func waitCounts(t *testing.T, fleet *sim.Fleet, what string, ok func(sim.Counts) bool) sim.Counts {
	t.Helper()
	deadline := time.Now().Add(phaseTimeout)
	for {
		c := fleet.Counts()
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %+v", what, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
