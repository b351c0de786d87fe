package sshagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// DefaultMaxConnections is how many agent connections are served at once
// when Config.MaxConnections is zero. One `ssh devvm …` holds one or two.
const DefaultMaxConnections = 32

// DefaultRequestTimeout is how long a request may take to arrive once its
// first byte has, when Config.RequestTimeout is zero. Idle connections
// between requests have no limit: ssh keeps its agent connection open.
const DefaultRequestTimeout = 10 * time.Second

// Errors New returns for a configuration it refuses.
var (
	// ErrNoKey means Config.Key is nil.
	ErrNoKey = errors.New("sshagent: no devvm key")
	// ErrNoHostKeys means Config.DevvmHostKeys is empty: nothing could ever
	// be signed.
	ErrNoHostKeys = errors.New("sshagent: no pinned devvm host key")
	// ErrHostKeyType means a pinned host key is not Ed25519.
	ErrHostKeyType = errors.New("sshagent: pinned devvm host keys must be ssh-ed25519")
	// ErrNoUser means Config.User is empty.
	ErrNoUser = errors.New("sshagent: no devvm user")
)

// Config says which key the agent holds and the only login it signs. Its
// zero value is refused by New: there is no default key, host or user.
type Config struct {
	// Key is the devvm key: the only key ever listed or used.
	Key ssh.Signer
	// DevvmHostKeys are the Ed25519 host keys pinned for the devvm's
	// host:port (see LoadHostKeys). A connection must be bound to one of
	// them before anything is signed.
	DevvmHostKeys []ssh.PublicKey
	// User is the only user name a signed login may be for.
	User string
	// MaxConnections bounds concurrent agent connections; a connection over
	// the bound is closed at once. Zero means DefaultMaxConnections.
	MaxConnections int
	// RequestTimeout bounds the rest of a request once its first byte has
	// arrived, and the writing of its reply; a peer that stalls mid-request
	// or leaves replies unread loses its connection. Zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives one audit line per decision. Nil means no logging.
	Logger hclog.Logger
	// Registerer receives the agent's metrics. Nil means they are kept but
	// not registered anywhere.
	Registerer prometheus.Registerer
}

// Server is the restricted agent. It is safe for concurrent use; Serve may
// be called on several listeners.
type Server struct {
	key      ssh.Signer
	keyBlob  []byte
	hostKeys [][]byte // Marshal() of each pinned host key
	user     string
	maxConns int
	reqTime  time.Duration
	log      hclog.Logger
	metrics  *metrics
}

// New checks cfg and returns a Server, registering its metrics on
// cfg.Registerer.
func New(cfg Config) (*Server, error) {
	if cfg.Key == nil {
		return nil, ErrNoKey
	}
	if cfg.User == "" {
		return nil, ErrNoUser
	}
	if len(cfg.DevvmHostKeys) == 0 {
		return nil, ErrNoHostKeys
	}
	s := &Server{
		key:      cfg.Key,
		keyBlob:  cfg.Key.PublicKey().Marshal(),
		user:     cfg.User,
		maxConns: cfg.MaxConnections,
		reqTime:  cfg.RequestTimeout,
		log:      cfg.Logger,
	}
	for _, k := range cfg.DevvmHostKeys {
		if k == nil || k.Type() != ssh.KeyAlgoED25519 {
			return nil, ErrHostKeyType
		}
		s.hostKeys = append(s.hostKeys, k.Marshal())
	}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxConnections
	}
	if s.reqTime <= 0 {
		s.reqTime = DefaultRequestTimeout
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register agent metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Serve accepts agent connections on l and serves each with its own agent
// value until ctx ends. It then closes l and every connection, waits for
// their goroutines, and returns nil. If Accept fails for another reason it
// does the same and returns that error.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var (
		wg sync.WaitGroup
		// mu protects the following.
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		_ = l.Close()
		for c := range conns {
			_ = c.Close()
		}
	}
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		closeAll()
	}()

	var acceptErr error
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("accept agent connection: %w", err)
			}
			break
		}
		peer := peerOf(nc)
		s.metrics.connections.Inc()
		mu.Lock()
		switch {
		case closed:
			_ = nc.Close()
		case len(conns) >= s.maxConns:
			_ = nc.Close()
			s.metrics.refused.WithLabelValues(string(requestConnection)).Inc()
			s.log.Warn("agent connection refused", "event", "connect", "outcome", "refused",
				"reason", "too many connections", "uid", peer.uid, "pid", peer.pid)
		default:
			conns[nc] = struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveConn(nc, peer)
				mu.Lock()
				delete(conns, nc)
				mu.Unlock()
			}()
		}
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	return acceptErr
}

// serveConn runs one connection's requests through a fresh agent value and
// closes the connection.
func (s *Server) serveConn(nc net.Conn, peer peerCred) {
	defer nc.Close()
	a := s.newConnAgent(peer)
	a.log.Debug("agent connection", "event", "connect")
	err := serveFrames(a, nc, s.reqTime)
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		// The peer broke the framing (ErrFrameSize, a truncated frame): it
		// loses this connection only.
		a.log.Warn("agent connection closed", "event", "disconnect", "reason", err.Error())
	}
}

// peerCred is the caller of an agent connection, from SO_PEERCRED; -1 when
// unknown.
type peerCred struct {
	uid, pid int
}

// peerOf reads the peer's credentials from a Unix socket connection: a
// *net.UnixConn, or any wrapper that exposes its socket (syscall.Conn, as
// ipc.Listener's connections do).
func peerOf(c net.Conn) peerCred {
	p := peerCred{uid: -1, pid: -1}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return p
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return p
	}
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			p.uid, p.pid = int(cred.Uid), int(cred.Pid)
		}
	})
	return p
}
