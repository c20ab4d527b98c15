//go:build linux

package pluginhost

import (
	"os/exec"
	"syscall"
)

// ownProcess makes the kernel kill the plugin when the hub dies, even by
// SIGKILL, so no plugin outlives the hub and keeps a partner link open.
// Pdeathsig fires when the launching OS thread ends; Go keeps its threads
// unless a goroutine exits while locked to one, which the host never does.
func ownProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
