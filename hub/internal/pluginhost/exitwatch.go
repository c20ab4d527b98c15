package pluginhost

import (
	"sync"
	"time"
)

// exitPoll is how often a process is polled where the kernel offers no
// exit notification the host can wait on (see watchExit).
const exitPoll = 20 * time.Millisecond

// exitedUnknown is LastError for a process that exited in a way not (yet)
// known.
const exitedUnknown = "process exited"

// exitWatch tells when one plugin process has exited. It watches the
// process itself rather than go-plugin's Exited, which turns true only
// once the process's pipes are drained, its stderr forwarded through the
// hub's logger and the child reaped: seconds late when those are slow.
type exitWatch struct {
	done chan struct{} // closed once the process has exited
	once sync.Once

	mu  sync.Mutex
	why string // how it ended ("signal: killed"), "" if unknown

	// peek asks the kernel now, for readers that must not wait for the
	// watching goroutine to be scheduled; nil where it cannot.
	peek func() bool
	// release ends the watch and waits for its goroutine.
	release func()
}

func newExitWatch() *exitWatch {
	return &exitWatch{done: make(chan struct{})}
}

// exit records that the process ended, how if known.
func (w *exitWatch) exit(why string) {
	w.once.Do(func() {
		w.mu.Lock()
		w.why = why
		w.mu.Unlock()
		close(w.done)
	})
}

// exited reports whether the process is gone, asking the kernel if the
// watching goroutine has not said so yet.
func (w *exitWatch) exited() bool {
	select {
	case <-w.done:
		return true
	default:
	}
	return w.peek != nil && w.peek()
}

// reason is LastError for a process that exited.
func (w *exitWatch) reason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.why == "" {
		return exitedUnknown
	}
	return "process exited: " + w.why
}

// setWhy fills in how the process ended once learnt another way.
func (w *exitWatch) setWhy(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.why == "" {
		w.why = why
	}
}

func (w *exitWatch) stop() {
	if w.release != nil {
		w.release()
	}
}

// pollExit watches by polling exited, for where the kernel gives no
// handle on the process.
func pollExit(exited func() bool) *exitWatch {
	w := newExitWatch()
	w.peek = exited
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(exitPoll)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if exited() {
					w.exit("")
					return
				}
			}
		}
	})
	var once sync.Once
	w.release = func() {
		once.Do(func() { close(quit) })
		wg.Wait()
	}
	return w
}
