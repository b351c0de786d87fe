package pvesim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	gssh "github.com/gliderlabs/ssh"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/pvegate"
)

// Config is the simulated host's configuration. VM, AuthorizedKey and
// HostKey are required; the rest have safe zero values.
type Config struct {
	// VM is the simulated VM the gate acts on.
	VM *VM
	// AuthorizedKey is the only public key allowed to log in.
	AuthorizedKey ssh.PublicKey
	// HostKey is the key the server presents.
	HostKey ssh.Signer
	// Addr is the listen address; "" means 127.0.0.1:0. It must be a
	// loopback IP.
	Addr string
	// Logger gets the gate's call lines and session refusals; nil discards.
	Logger hclog.Logger
	// CommandTimeout, SectionTimeout and StopWait are passed to the gate
	// (pvegate.Config); 0 means its defaults.
	CommandTimeout time.Duration
	SectionTimeout time.Duration
	StopWait       time.Duration
	// ConsoleWindow is how long console listens to the serial socket
	// (pvegate.Config); 0 means the gate's default.
	ConsoleWindow time.Duration
	// AllowGuestExec is pve-gate's --allow-guest-exec.
	AllowGuestExec bool
}

// Server is a running simulated Proxmox host.
type Server struct {
	// Addr is the address it listens on, "127.0.0.1:port".
	Addr string

	gate     *pvegate.Gate
	hostKey  ssh.PublicKey
	log      hclog.Logger
	srv      *gssh.Server
	ln       net.Listener
	conns    atomic.Int64
	ctx      context.Context // cancelled by Close: ends running verbs
	cancel   context.CancelFunc
	dir      string       // the host's folder: the gate's run dir, the serial socket
	serial   net.Listener // the VM's serial console socket
	vm       *VM
	serialIn atomic.Int64 // bytes clients wrote to the serial socket

	// mu protects the following.
	mu     sync.Mutex
	closed bool
	open   map[net.Conn]struct{}
	wg     sync.WaitGroup // the accept loop, connections and sessions
}

// Start validates cfg, listens, and serves until Close.
func Start(cfg Config) (*Server, error) {
	switch {
	case cfg.VM == nil:
		return nil, errors.New("pvesim config: no VM")
	case cfg.AuthorizedKey == nil:
		return nil, errors.New("pvesim config: no authorized key")
	case cfg.HostKey == nil:
		return nil, errors.New("pvesim config: no host key")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pvesim config: addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("pvesim config: addr %q is not a loopback IP", addr)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	dir, err := os.MkdirTemp("", "pvesim-")
	if err != nil {
		return nil, fmt.Errorf("pvesim: %w", err)
	}
	serialPath := filepath.Join(dir, "serial0")
	serial, err := net.Listen("unix", serialPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pvesim serial socket: %w", err)
	}
	gate, err := pvegate.New(pvegate.Config{
		Pvesh:          pvegate.DefaultPvesh,
		Serial:         serialPath,
		RunDir:         filepath.Join(dir, "run"),
		AllowGuestExec: cfg.AllowGuestExec,
		ConsoleWindow:  cfg.ConsoleWindow,
		VMID:           cfg.VM.VMID(),
		QM:             QM,
		Runner:         cfg.VM,
		FS:             cfg.VM,
		Lock:           &hostLock{},
		CommandTimeout: cfg.CommandTimeout,
		SectionTimeout: cfg.SectionTimeout,
		StopWait:       cfg.StopWait,
		PollInterval:   50 * time.Millisecond,
		Logger:         log.Named("pve-gate"),
	})
	if err != nil {
		serial.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pvesim: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		serial.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pvesim listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ctx:     ctx,
		cancel:  cancel,
		Addr:    ln.Addr().String(),
		gate:    gate,
		hostKey: cfg.HostKey.PublicKey(),
		log:     log,
		ln:      ln,
		open:    map[net.Conn]struct{}{},
		dir:     dir,
		serial:  serial,
		vm:      cfg.VM,
	}
	authorized := cfg.AuthorizedKey
	s.srv = &gssh.Server{
		HostSigners: []gssh.Signer{cfg.HostKey},
		PublicKeyHandler: func(_ gssh.Context, key gssh.PublicKey) bool {
			return gssh.KeysEqual(key, authorized)
		},
		// Only sessions; no direct-tcpip (local forwarding), and no global
		// requests (tcpip-forward: remote forwarding).
		ChannelHandlers: map[string]gssh.ChannelHandler{"session": s.session},
		RequestHandlers: map[string]gssh.RequestHandler{},
		PtyCallback:     func(gssh.Context, gssh.Pty) bool { return false },
	}
	s.wg.Add(2)
	go s.accept()
	go s.serveSerial()
	return s, nil
}

// serveSerial is the VM's serial console socket: like QEMU's, it sends what
// the guest prints (here: the screen's last lines) to the client, and counts
// anything the client writes (pve-gate must write nothing).
func (s *Server) serveSerial() {
	defer s.wg.Done()
	for {
		c, err := s.serial.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.open[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
				c.Close()
			}()
			if _, err := io.WriteString(c, s.vm.serialText()); err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			s.serialIn.Add(n)
		}()
	}
}

// SerialWritten returns how many bytes clients wrote to the serial socket.
func (s *Server) SerialWritten() int64 { return s.serialIn.Load() }

// accept is the accept loop; it ends when the listener closes.
func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.open[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.srv.HandleConn(c)
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
		}()
	}
}

// Connections returns how many TCP connections the server has accepted.
func (s *Server) Connections() int64 { return s.conns.Load() }

// HostKey returns the public host key the server presents.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey }

// KnownHostsLine returns the OpenSSH known_hosts line pinning the server:
// "[127.0.0.1]:port ssh-ed25519 AAAA…".
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.hostKey)
}

// Close stops listening, drops every connection (running verbs see their
// context cancelled) and waits for all of the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	err := s.ln.Close()
	s.serial.Close()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

// exitStatus is the payload of the "exit-status" channel request (RFC 4254
// §6.10).
type exitStatus struct {
	Status uint32
}

// execPayload is the payload of the "exec" channel request (RFC 4254 §6.5).
type execPayload struct {
	Command string
}

// session serves one session channel with a fixed table: "exec" runs the
// gate on its command, "shell" runs it on the empty command (refused, as a
// forced command without SSH_ORIGINAL_COMMAND is), everything else (pty-req,
// auth-agent-req@openssh.com, x11-req, env, subsystem, …) is refused.
func (s *Server) session(_ *gssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, _ gssh.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Reject(ssh.ResourceShortage, "shutting down")
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for req := range reqs {
		var command string
		switch req.Type {
		case "exec":
			var p execPayload
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			command = p.Command
		case "shell":
		default:
			s.log.Debug("session request refused", "type", req.Type, "remote", conn.RemoteAddr().String())
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
			continue
		}
		_ = req.Reply(true, nil)
		// Later requests on this channel are refused while the verb runs.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for r := range reqs {
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}()
		// The server's context, not the connection's: as on the real host,
		// a client that goes away does not stop a verb halfway (a cycle
		// cut between stop and start would leave the VM off); Close does.
		code := s.gate.Run(s.ctx, pvegate.Request{Command: command, Client: conn.RemoteAddr().String()}, ch, ch.Stderr())
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(exitStatus{Status: uint32(code)}))
		_ = ch.CloseWrite()
		ch.Close()
		<-drained
		return
	}
}

// hostLock is the simulated host's lock of mutating verbs.
type hostLock struct {
	mu sync.Mutex
}

var _ pvegate.Locker = (*hostLock)(nil)

// TryLock implements pvegate.Locker.
func (l *hostLock) TryLock() (func(), error) {
	if !l.mu.TryLock() {
		return nil, pvegate.ErrBusy
	}
	return l.mu.Unlock, nil
}
