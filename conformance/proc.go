package conformance

import "os"

// killPID ends a process the kit started, or one the plugin started and
// left behind, by SIGKILL where there is one.
func killPID(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
		_ = p.Release()
	}
}
