package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdPaths are where a stock sshd is looked for, in order, before PATH.
var sshdPaths = []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"}

// readyTimeout bounds how long Start waits for sshd to answer a handshake.
const readyTimeout = 15 * time.Second

// startAttempts is how many free ports Start tries: the port is chosen by
// binding :0 and closing it, so another process may grab it in between.
const startAttempts = 5

// Config says what the test sshd lets in.
type Config struct {
	// AuthorizedKeys is the content of the authorized_keys file for the
	// login user, options included (e.g. `restrict,command="…" ssh-ed25519 …`).
	AuthorizedKeys string
	// Extra holds extra sshd_config lines, appended after the harness's own.
	// sshd takes the first value of most keywords, so Extra cannot override
	// the harness's settings; use Match blocks or keywords it does not set.
	Extra []string
}

// Server is a running stock sshd. It is stopped by the test's cleanup.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Host is "127.0.0.1".
	Host string
	// Port is the TCP port sshd listens on.
	Port int
	// User is the login user: the user running the test.
	User string
	// HostKey is the public half of the host key sshd presents.
	HostKey ssh.PublicKey

	dir     string
	logPath string
	log     *syncBuffer // sshd's own stdout/stderr: start-up failures
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs sshd for the rest of the test and returns once it completes an
// SSH handshake presenting HostKey. It fails the test (never skips) when sshd
// is missing or does not come up, with sshd's log in the message.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin := findSSHD(t)
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start as root without its privilege separation
		// directory; a fresh container often lacks it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshdtest: create /run/sshd: %v", err)
		}
	}
	dir := t.TempDir()
	hostKeyPath, hostKey := writeHostKey(t, dir)
	akPath := filepath.Join(dir, "authorized_keys")
	ak := cfg.AuthorizedKeys
	if ak != "" && !strings.HasSuffix(ak, "\n") {
		ak += "\n"
	}
	if err := os.WriteFile(akPath, []byte(ak), 0o600); err != nil {
		t.Fatalf("sshdtest: write authorized_keys: %v", err)
	}

	var lastErr error
	for range startAttempts {
		port := freePort(t)
		s := &Server{
			Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Host:    "127.0.0.1",
			Port:    port,
			User:    u.Username,
			HostKey: hostKey,
			dir:     dir,
			log:     &syncBuffer{},
			done:    make(chan struct{}),
		}
		cfgPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfgPath, []byte(s.config(hostKeyPath, akPath, cfg.Extra)), 0o600); err != nil {
			t.Fatalf("sshdtest: write sshd_config: %v", err)
		}
		lastErr = s.run(t, bin, cfgPath)
		if lastErr == nil {
			return s
		}
		if !strings.Contains(s.Log(), "Address already in use") {
			break
		}
	}
	t.Fatalf("sshdtest: %v", lastErr)
	return nil
}

// findSSHD returns the absolute path of sshd (sshd re-executes itself and
// insists on an absolute path).
func findSSHD(t testing.TB) string {
	t.Helper()
	for _, p := range sshdPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	t.Fatalf("sshd not found: run make deps-apt (installs Debian's openssh-server)")
	return ""
}

// config renders the sshd_config. Every line is fixed here except Extra.
func (s *Server) config(hostKeyPath, akPath string, extra []string) string {
	lines := []string{
		"ListenAddress " + s.Addr,
		"HostKey " + hostKeyPath,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"AuthorizedKeysFile " + akPath,
		"AuthenticationMethods publickey",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"HostbasedAuthentication no",
		"PermitRootLogin prohibit-password",
		"AllowUsers " + s.User,
		"LogLevel DEBUG",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
		"MaxStartups 100:30:200",
		"LoginGraceTime 30",
	}
	lines = append(lines, extra...)
	return strings.Join(lines, "\n") + "\n"
}

// run starts sshd with cfgPath and waits until it answers a handshake, or
// exits, or readyTimeout passes.
func (s *Server) run(t testing.TB, bin, cfgPath string) error {
	t.Helper()
	// -E, not -e: with -e the session child's debug lines would reach the
	// client's stderr and pollute what tests assert on.
	s.logPath = cfgPath + ".log"
	s.cmd = exec.Command(bin, "-D", "-E", s.logPath, "-f", cfgPath)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sshdtest: sshd log (%s):\n%s", s.Addr, s.Log())
		}
	})

	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		err := s.handshake()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited before it was ready (%v); log:\n%s", s.cmd.ProcessState, s.Log())
		case <-deadline.C:
			return fmt.Errorf("sshd not ready after %v (last: %v); log:\n%s", readyTimeout, err, s.Log())
		case <-poll.C:
		}
	}
}

// errNoAuth is what handshake's client offers instead of a credential: the
// handshake is complete (host key verified) once sshd asks for one.
var errNoAuth = errors.New("sshdtest readiness probe")

// handshake completes key exchange with sshd, verifying its host key, and
// stops at user authentication.
func (s *Server) handshake() error {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cc := &ssh.ClientConfig{
		User:            s.User,
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Auth: []ssh.AuthMethod{ssh.PasswordCallback(func() (string, error) {
			return "", errNoAuth
		})},
	}
	c, _, _, err := ssh.NewClientConn(conn, s.Addr, cc)
	if err == nil {
		c.Close()
		return errors.New("sshd accepted a login without credentials")
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return nil
	}
	return err
}

// stop ends sshd and waits for it. Per-connection children run in their own
// sessions (sshd calls setsid) and end with their connections.
func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// KnownHostsLine returns the OpenSSH known_hosts line pinning the host key:
// "[127.0.0.1]:port ssh-ed25519 AAAA…".
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// WriteKnownHosts writes KnownHostsLine to a new file in a temporary
// directory of t and returns its path.
func (s *Server) WriteKnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatalf("sshdtest: write known_hosts: %v", err)
	}
	return p
}

// SSHArgs returns the arguments (without the ssh binary, and without the
// remote command) for the real OpenSSH client to log in with the key file
// keyPath, trusting only the host keys in knownHostsPath. No user or system
// ssh config is read, no agent is used, and no prompt can block the test.
// opts (e.g. "-tt", "-o", "IdentityAgent=/path") come first: ssh keeps the
// first value it sees of an option, so they override the defaults here.
func (s *Server) SSHArgs(keyPath, knownHostsPath string, opts ...string) []string {
	args := append([]string{"-F", "/dev/null"}, opts...)
	args = append(args,
		"-i", keyPath,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+knownHostsPath,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=10",
		"-p", strconv.Itoa(s.Port),
	)
	return append(args, s.User+"@"+s.Host)
}

// Log returns what sshd has logged so far (LogLevel DEBUG): its log file,
// then anything it wrote to stdout or stderr.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b) + s.log.String()
}

// WriteKey generates an Ed25519 key, writes its private half in OpenSSH
// format to a new 0600 file in dir, and returns the file's path, the public
// key and a signer for Go clients. ssh.MarshalAuthorizedKey(pub) gives the
// key's authorized_keys form.
func WriteKey(t testing.TB, dir string) (path string, pub ssh.PublicKey, signer ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: generate key: %v", err)
	}
	f, err := os.CreateTemp(dir, "id_ed25519-*")
	if err != nil {
		t.Fatalf("sshdtest: create key file: %v", err)
	}
	path = f.Name()
	signer = writePrivate(t, f, priv)
	return path, signer.PublicKey(), signer
}

// AuthorizedKey returns pub as one authorized_keys line with options in
// front (options may be empty), without a trailing newline.
func AuthorizedKey(options string, pub ssh.PublicKey) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
	if options == "" {
		return line
	}
	return options + " " + line
}

// writeHostKey makes the server's Ed25519 host key file.
func writeHostKey(t testing.TB, dir string) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: generate host key: %v", err)
	}
	p := filepath.Join(dir, "ssh_host_ed25519_key")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("sshdtest: create host key: %v", err)
	}
	return p, writePrivate(t, f, priv).PublicKey()
}

// writePrivate writes priv to f in OpenSSH format, closes f, and returns a
// signer for it.
func writePrivate(t testing.TB, f *os.File, priv ed25519.PrivateKey) ssh.Signer {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("sshdtest: marshal key: %v", err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatalf("sshdtest: chmod key: %v", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		t.Fatalf("sshdtest: write key: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("sshdtest: close key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshdtest: signer: %v", err)
	}
	return signer
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for sshd's writer and the test's readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
