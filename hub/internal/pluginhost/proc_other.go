//go:build !linux

package pluginhost

import "os/exec"

// ownProcess does nothing where the kernel has no parent-death signal;
// there the host's Stop is the only thing that ends plugins.
func ownProcess(cmd *exec.Cmd) {}
