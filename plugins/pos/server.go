package pos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/sdk/pos/iso"
)

// writeTimeout bounds writing one answer to a terminal.
const writeTimeout = 10 * time.Second

// server is the terminals' TCP front end: the UnionPay POS framing (2-byte
// length, TPDU, header) read and written with iso.Codec on a plain
// listener. A terminal sends one request at a time and waits for its
// answer, so each connection is served in order by one goroutine; a
// request whose terminal hangs up is still finished, so that its reversal
// finds it done.
type server struct {
	h    *host
	ln   net.Listener
	idle time.Duration
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the connections
	bg     sync.WaitGroup // background work (settleDoubt)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func listen(addr string, h *host, idle time.Duration, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pos: listening on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{h: h, ln: ln, idle: idle, log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	h.spawn = s.spawn
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// addr is the address the server listens on.
func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve answers one terminal connection's requests in order. A frame that
// does not decode cannot be answered (its terminal and STAN are unknown),
// so the connection is closed; so is one idle too long.
func (s *server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	log := s.log.With("remote", c.RemoteAddr().String())
	var codec iso.Codec
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.idle))
		m, err := codec.ReadMessage(c)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				log.Debug("idle connection closed")
			default:
				// Decode errors carry no card data (iso.DecodeError).
				log.Warn("bad frame; connection closed", "err", err)
			}
			return
		}
		if m == nil {
			continue // keep-alive
		}
		// A message that cannot be answered (a response sent to the host, or
		// one whose answer cannot be built) ends the connection: the
		// terminal would otherwise wait for an answer that never comes.
		resp := s.exchange(log, m)
		if resp == nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := codec.WriteMessage(c, resp); err != nil {
			log.Info("answer not delivered", "err", err)
			return
		}
	}
}

// exchange answers one message; a panic is logged and ends the connection,
// never the plugin.
func (s *server) exchange(log *slog.Logger, m *iso8583.Message) (resp *iso8583.Message) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic answering a message; connection closed", "panic", fmt.Sprint(r))
			resp = nil
		}
	}()
	return s.h.exchange(s.ctx, m)
}

// close stops accepting, hangs up on every terminal and waits for the
// requests being answered to finish (each hub call is bounded by the hub
// timeout), so no payment is left half-recorded.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
	s.cancel()
	s.bg.Wait()
}

// spawn runs f in the background with the server's context, which close
// cancels once the connections are done.
func (s *server) spawn(f func(ctx context.Context)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f(s.ctx)
	}()
}
