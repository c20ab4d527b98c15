//go:build linux

package pluginhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ownProcess makes the kernel kill the plugin when the hub dies, even by
// SIGKILL, so no plugin outlives the hub and keeps a partner link open.
// Pdeathsig fires when the launching OS thread ends; Go keeps its threads
// unless a goroutine exits while locked to one, which the host never does.
func ownProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// watchExit watches pid through a pidfd, which the kernel makes readable
// the moment the process dies. The runtime's poller waits on it, so no
// thread is held and no load on the host can delay the wake-up beyond
// scheduling one goroutine. Where pidfds are missing (before Linux 5.3)
// it polls exited.
func watchExit(pid int, exited func() bool) *exitWatch {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return pollExit(exited)
	}
	// Non-blocking, so os.NewFile hands it to the runtime's poller.
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd %d", pid))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return pollExit(exited)
	}
	w := newExitWatch()
	w.peek = func() bool {
		dead := false
		if rc.Control(func(fd uintptr) { dead = pidfdReadable(fd) }) != nil {
			return false // released: the watch is over
		}
		return dead
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		why := ""
		err := rc.Read(func(fd uintptr) bool {
			if !pidfdReadable(fd) {
				return false // park until the poller says readable
			}
			why = exitStatus(fd)
			return true
		})
		if err == nil {
			w.exit(why)
			return
		}
		// The poller refused the pidfd (or the watch was released): ask
		// the kernel at intervals instead.
		t := time.NewTicker(exitPoll)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			var done bool
			if rc.Control(func(fd uintptr) {
				if done = pidfdReadable(fd); done {
					why = exitStatus(fd)
				}
			}) != nil {
				return
			}
			if done {
				w.exit(why)
				return
			}
		}
	})
	var once sync.Once
	w.release = func() {
		// Closing wakes a parked Read with an error.
		once.Do(func() {
			close(quit)
			f.Close()
		})
		wg.Wait()
	}
	return w
}

// pidfdReadable reports whether the process behind a pidfd has exited.
func pidfdReadable(fd uintptr) bool {
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 1 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	}
}

// Values of siginfo's si_code for a child's end (<signal.h>).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// exitStatus says how the process behind a pidfd ended, in the words of
// os.ProcessState ("exit status 3", "signal: killed"), without reaping it:
// go-plugin's own Wait does that. "" if go-plugin reaped it first.
func exitStatus(fd uintptr) string {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil); err != nil {
		return ""
	}
	// si_status follows si_pid and si_uid in the union after the three
	// ints, which 64-bit platforms align to 8.
	off := 12
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	raw := (*[unsafe.Sizeof(info)]byte)(unsafe.Pointer(&info))
	st := int(int32(binary.NativeEndian.Uint32(raw[off+8:])))
	switch info.Code {
	case cldExited:
		return fmt.Sprintf("exit status %d", st)
	case cldKilled:
		return "signal: " + unix.Signal(st).String()
	case cldDumped:
		return "signal: " + unix.Signal(st).String() + " (core dumped)"
	}
	return ""
}
