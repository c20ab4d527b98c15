//go:build !linux

package conformance

import "os/exec"

func ownProcess(*exec.Cmd) {}

type proc struct {
	pid  int
	comm string
}

// descendants is only implemented on Linux; elsewhere the shutdown check
// cannot look for processes a plugin leaves behind.
func descendants(int) []proc { return nil }

func (proc) alive() bool { return false }

const canSeeChildren = false
