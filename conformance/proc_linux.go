//go:build linux

package conformance

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// ownProcess makes the kernel kill the plugin if the kit dies, as the
// hub's plugin host does.
func ownProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// proc is a process as /proc shows it; start (clock ticks since boot)
// tells a process from a later one given the same pid.
type proc struct {
	pid, ppid int
	start     string
	comm      string
	zombie    bool
}

// readProc reads /proc/PID/stat; ok is false if there is no such process.
func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, false
	}
	s := string(b)
	// The command name is in parentheses and may hold spaces or ")".
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	f := strings.Fields(s[end+1:])
	// After the name: state(0) ppid(1) … starttime(19).
	if len(f) < 20 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return proc{pid: pid, ppid: ppid, start: f[19], comm: s[open+1 : end], zombie: f[0] == "Z" || f[0] == "X"}, true
}

// descendants lists the live processes below pid.
func descendants(pid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]proc{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok && !p.zombie {
			children[p.ppid] = append(children[p.ppid], p)
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// alive reports whether p is still running (not a later process with its pid).
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && !now.zombie && now.start == p.start
}

// canSeeChildren says whether descendants works here.
const canSeeChildren = true
