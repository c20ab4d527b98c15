package faulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Database is a PostgreSQL database of the test's own, so that faults
// that disallow connections or terminate sessions touch no other test.
type Database struct {
	Name  string
	base  string // URL of the server's maintenance database
	admin *pgx.ConnConfig
}

// NewDatabase creates citycard_fault_<random> on the server at base (a
// PostgreSQL URL) and drops it when t ends.
func NewDatabase(t testing.TB, base string) *Database {
	t.Helper()
	cc, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("PostgreSQL URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	d := &Database{Name: "citycard_fault_" + hex.EncodeToString(b[:]), base: base, admin: cc}
	if err := d.exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{d.Name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", d.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", d.Name, err)
		}
	})
	return d
}

func (d *Database) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.ConnectConfig(ctx, d.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// URL is the database's URL on the server, or through the proxy at addr
// (host:port) when addr is not empty.
func (d *Database) URL(addr string) string {
	u, _ := url.Parse(d.base)
	u.Path = "/" + d.Name
	if addr != "" {
		u.Host = addr
	}
	return u.String()
}

// Addr is the server's host:port.
func (d *Database) Addr() string {
	return net.JoinHostPort(d.admin.Host, strconv.Itoa(int(d.admin.Port)))
}

// Terminate ends every session on the database from the server side
// (pg_terminate_backend), and returns how many it ended.
func (d *Database) Terminate(ctx context.Context) (int, error) {
	conn, err := pgx.ConnectConfig(ctx, d.admin)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, d.Name).Scan(&n)
	return n, err
}

// AllowConnections sets ALLOW_CONNECTIONS on the database; disallowing
// also terminates its sessions, as an operator taking it down does.
func (d *Database) AllowConnections(ctx context.Context, allow bool) error {
	if err := d.exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{d.Name}.Sanitize(), allow)); err != nil {
		return err
	}
	if !allow {
		_, err := d.Terminate(ctx)
		return err
	}
	return nil
}

// Server is a private PostgreSQL instance in a temporary directory, on a
// loopback port of its own, that a test may restart without touching the
// shared server.
type Server struct {
	dir, bin, port string
	runAs          []string
}

// NewServer initialises and starts a private instance, stopped and
// removed when t ends. It skips t, with the reason, when that cannot be
// done here (no PostgreSQL binaries, or no unprivileged user to run them
// as root).
func NewServer(t testing.TB) *Server {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			bins = []string{p}
		} else {
			t.Skip("no pg_ctl (looked in /usr/lib/postgresql/*/bin and PATH): cannot start a private PostgreSQL to restart")
		}
	}
	s := &Server{bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "citycard-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root with no postgres user to run a private PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			t.Skip("running as root without runuser: cannot start a private PostgreSQL as the postgres user")
		}
		s.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if out, err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Skipf("initdb of a private PostgreSQL failed, so the restart fault cannot run: %v\n%s", err, out)
	}
	if out, err := s.ctl("start"); err != nil {
		t.Skipf("a private PostgreSQL did not start, so the restart fault cannot run: %v\n%s", err, out)
	}
	t.Cleanup(func() { s.ctl("stop", "-m", "immediate") })
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) run(name string, args ...string) (string, error) {
	argv := append(append(append([]string{}, s.runAs...), filepath.Join(s.bin, name)), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

func (s *Server) ctl(action string, extra ...string) (string, error) {
	opts := "-p " + s.port + " -k " + s.dir + " -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
	args := append([]string{action, "-D", s.data(), "-w", "-t", "60", "-l", filepath.Join(s.dir, "log"), "-o", opts}, extra...)
	return s.run("pg_ctl", args...)
}

// URL is the instance's database postgres.
func (s *Server) URL() string {
	return "postgres://postgres@127.0.0.1:" + s.port + "/postgres?sslmode=disable"
}

// Restart stops the instance (mode fast or immediate, the latter a
// crash) and starts it again, waiting for it to take connections.
func (s *Server) Restart(mode string) error {
	if out, err := s.ctl("stop", "-m", mode); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(out))
	}
	if out, err := s.ctl("start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}
