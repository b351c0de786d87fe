package devvmsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// waitDelay bounds how long a killed command's leftover children may hold
// its output open.
const waitDelay = 2 * time.Second

// Errors Start returns for a configuration it refuses.
var (
	ErrNoUser    = errors.New("devvmsim: no user")
	ErrNoKey     = errors.New("devvmsim: no authorized key")
	ErrNoHostKey = errors.New("devvmsim: no host key")
)

// Config says who may log in and how the double presents itself.
type Config struct {
	// User is the only user let in.
	User string
	// AuthorizedKey is the only key let in.
	AuthorizedKey ssh.PublicKey
	// HostKey is the host key the server presents.
	HostKey ssh.Signer
	// Logger receives one line per session. Nil means no logging.
	Logger hclog.Logger
	// Reachable, if set, is asked for each TCP connection: false drops it
	// at once, before the SSH handshake, as a devvm whose sshd is dead (or
	// whose VM is down) does. The local stack passes the simulated VM's
	// SSHUp, so ssh fails while the guest agent may live on.
	Reachable func() bool
}

// Server is a running devvm double.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Host is "127.0.0.1".
	Host string
	// Port is the TCP port.
	Port int
	// HostKey is the public half of the host key the server presents.
	HostKey ssh.PublicKey

	cfg    Config
	log    hclog.Logger
	dir    string
	srv    *gliderssh.Server
	ctx    context.Context
	cancel context.CancelFunc
	logins atomic.Int64
	served chan struct{}

	// mu protects the following.
	mu       sync.Mutex
	closed   bool
	sessions sync.WaitGroup
	agentN   int
}

// Start listens on 127.0.0.1:0 and serves until Close.
func Start(cfg Config) (*Server, error) {
	switch {
	case cfg.User == "":
		return nil, ErrNoUser
	case cfg.AuthorizedKey == nil:
		return nil, ErrNoKey
	case cfg.HostKey == nil:
		return nil, ErrNoHostKey
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	dir, err := os.MkdirTemp("", "devvmsim-")
	if err != nil {
		return nil, fmt.Errorf("create working directory: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		Addr:    l.Addr().String(),
		Host:    "127.0.0.1",
		Port:    l.Addr().(*net.TCPAddr).Port,
		HostKey: cfg.HostKey.PublicKey(),
		cfg:     cfg,
		log:     log,
		dir:     dir,
		ctx:     ctx,
		cancel:  cancel,
		served:  make(chan struct{}),
	}
	s.srv = &gliderssh.Server{
		Handler:          s.handle,
		PublicKeyHandler: s.allow,
		HostSigners:      []gliderssh.Signer{cfg.HostKey},
		ConnCallback: func(_ gliderssh.Context, c net.Conn) net.Conn {
			if cfg.Reachable != nil && !cfg.Reachable() {
				return nil // gliderssh closes it
			}
			return c
		},
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

// Logins is how many authenticated sessions have started.
func (s *Server) Logins() int64 {
	return s.logins.Load()
}

// KnownHostsLine is the known_hosts line pinning this server:
// "[127.0.0.1]:port ssh-ed25519 AAAA…".
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// Close stops the server, ends running commands and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.srv.Close()
	<-s.served
	s.sessions.Wait()
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	if errors.Is(err, gliderssh.ErrServerClosed) {
		err = nil
	}
	return err
}

// allow lets in the configured user with the configured key only.
func (s *Server) allow(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	return ctx.User() == s.cfg.User && gliderssh.KeysEqual(key, s.cfg.AuthorizedKey)
}

// handle runs one session's command.
func (s *Server) handle(sess gliderssh.Session) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = sess.Exit(255)
		return
	}
	s.sessions.Add(1)
	s.agentN++
	n := s.agentN
	s.mu.Unlock()
	defer s.sessions.Done()
	s.logins.Add(1)

	if sess.RawCommand() == "" {
		_, _ = io.WriteString(sess.Stderr(), "devvmsim: interactive shells are not supported\n")
		_ = sess.Exit(1)
		return
	}
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + s.dir, "USER=" + s.cfg.User, "LANG=C"}
	if gliderssh.AgentRequested(sess) {
		fwd, err := s.forwardAgent(sess, n)
		if err != nil {
			_, _ = fmt.Fprintf(sess.Stderr(), "devvmsim: agent forwarding: %v\n", err)
			_ = sess.Exit(255)
			return
		}
		defer fwd.close()
		env = append(env, "SSH_AUTH_SOCK="+fwd.path)
	}

	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", sess.RawCommand())
	cmd.Dir = s.dir
	cmd.Env = env
	// A background child may keep the output pipes open after the shell is
	// killed: stop waiting for them after a while.
	cmd.WaitDelay = waitDelay
	cmd.Stdout = sess
	cmd.Stderr = sess.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = sess.Exit(255)
		return
	}
	// The copy ends when the client sends EOF or the channel closes, which
	// happens when this handler returns.
	go func() {
		_, _ = io.Copy(stdin, sess)
		_ = stdin.Close()
	}()
	code := 0
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			_, _ = fmt.Fprintf(sess.Stderr(), "devvmsim: run: %v\n", err)
			code = 255
		} else if code = exitErr.ExitCode(); code < 0 {
			code = 255
		}
	}
	s.log.Info("devvmsim session", "user", sess.User(), "exit_code", code)
	_ = sess.Exit(code)
}

// agentForward relays connections to a Unix socket in the session's
// environment to the client's agent, over auth-agent@openssh.com channels.
type agentForward struct {
	path string
	l    net.Listener
	wg   sync.WaitGroup

	// mu protects the following.
	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
}

func (s *Server) forwardAgent(sess gliderssh.Session, n int) (*agentForward, error) {
	sshConn, ok := sess.Context().Value(gliderssh.ContextKeyConn).(ssh.Conn)
	if !ok {
		return nil, errors.New("no SSH connection in the session context")
	}
	p := filepath.Join(s.dir, "agent-"+strconv.Itoa(n)+".sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	f := &agentForward{path: p, l: l, conns: map[io.Closer]struct{}{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.relay(sshConn, c)
			}()
		}
	}()
	return f, nil
}

// relay copies one local agent connection to a new agent channel and back.
func (f *agentForward) relay(sshConn ssh.Conn, c net.Conn) {
	defer c.Close()
	ch, reqs, err := sshConn.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		return
	}
	defer ch.Close()
	if !f.track(c, ch) {
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, ch)
		_ = c.(*net.UnixConn).CloseWrite()
	}()
	_, _ = io.Copy(ch, c)
	_ = ch.CloseWrite()
	<-done
}

// track registers a relay's ends so close can end it; false if already
// closing.
func (f *agentForward) track(cs ...io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

// close stops accepting, ends the relays and waits for them.
func (f *agentForward) close() {
	f.mu.Lock()
	f.closed = true
	_ = f.l.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
