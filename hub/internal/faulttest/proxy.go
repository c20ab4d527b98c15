package faulttest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a TCP proxy on a loopback port that forwards every connection
// to a target (PostgreSQL) and injects faults on demand: cut every open
// connection, refuse new ones for a while, delay traffic, or reset a
// connection in the middle of a commit.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[*link]struct{}
	refuse  time.Time // new connections are reset until then
	delay   time.Duration
	delayTo time.Time
	// resetCommits is how many connections are still to be reset when
	// they carry a COMMIT; afterCommit says whether the COMMIT reaches the
	// server first (the client then cannot know the outcome).
	resetCommits int
	afterCommit  bool

	wg     sync.WaitGroup
	closed atomic.Bool
	// Resets counts connections reset mid-commit.
	Resets atomic.Int64
}

type link struct{ client, server net.Conn }

// NewProxy listens on 127.0.0.1 on a free port and forwards to target
// (host:port).
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.closed.Store(true)
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.closed.Load() {
				return
			}
			continue
		}
		p.mu.Lock()
		refused := time.Now().Before(p.refuse)
		p.mu.Unlock()
		if refused {
			reset(c)
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			reset(c)
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, c, s, true)
		go p.pipe(l, s, c, false)
	}
}

// commitWord is how pgx sends the end of a transaction (a simple query).
var commitWord = []byte("commit")

// pipe copies one direction of a link; upstream is client → server.
func (p *Proxy) pipe(l *link, from, to net.Conn, upstream bool) {
	defer p.wg.Done()
	defer p.drop(l)
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if d := p.currentDelay(); d > 0 {
				time.Sleep(d)
			}
			if upstream && bytes.Contains(bytes.ToLower(chunk), commitWord) && p.takeCommitReset() {
				p.Resets.Add(1)
				if p.afterCommitNow() {
					to.Write(chunk)
					// Give the server the time to commit, not to answer.
					time.Sleep(2 * time.Millisecond)
				}
				return
			}
			if _, werr := to.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			// EOF or a broken connection: PostgreSQL's protocol has no
			// half-closed state worth keeping, so both ends go.
			return
		}
	}
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.delayTo) {
		return p.delay
	}
	return 0
}

func (p *Proxy) takeCommitReset() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resetCommits > 0 {
		p.resetCommits--
		return true
	}
	return false
}

func (p *Proxy) afterCommitNow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.afterCommit
}

// drop resets both ends of a link, once.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	_, ok := p.conns[l]
	delete(p.conns, l)
	p.mu.Unlock()
	if ok {
		reset(l.client)
		reset(l.server)
	}
}

// reset closes c with an RST rather than a FIN, as a broken network does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Cut resets every open connection; new ones are accepted.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		p.drop(l)
	}
	return len(links)
}

// Refuse cuts every open connection and resets new ones for d.
func (p *Proxy) Refuse(d time.Duration) {
	p.mu.Lock()
	p.refuse = time.Now().Add(d)
	p.mu.Unlock()
	p.Cut()
}

// Delay holds every chunk of traffic, both ways, for per before
// forwarding it, during the next d.
func (p *Proxy) Delay(per, d time.Duration) {
	p.mu.Lock()
	p.delay, p.delayTo = per, time.Now().Add(d)
	p.mu.Unlock()
}

// ResetCommits resets the next n connections that send a COMMIT. With
// after, the COMMIT is forwarded first, so the server commits and the
// client only sees its connection break: the outcome is unknown to it.
// Without, the transaction never commits.
func (p *Proxy) ResetCommits(n int, after bool) {
	p.mu.Lock()
	p.resetCommits, p.afterCommit = n, after
	p.mu.Unlock()
}

// Heal ends any refusal, delay and pending reset.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.refuse, p.delayTo, p.resetCommits = time.Time{}, time.Time{}, 0
	p.mu.Unlock()
}
