//go:build !linux

package pluginhost

import "os/exec"

// ownProcess does nothing where the kernel has no parent-death signal;
// there the host's Stop is the only thing that ends plugins.
func ownProcess(cmd *exec.Cmd) {}

// watchExit polls exited where the host has no pidfd to wait on.
func watchExit(pid int, exited func() bool) *exitWatch {
	return pollExit(exited)
}
