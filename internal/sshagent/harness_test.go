package sshagent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/testing/devvmsim"
	"breakglass/internal/testing/logtest"
	"breakglass/internal/testing/sshdtest"
)

// testUser is the devvm user the Go doubles let in.
const testUser = "breakglass"

// sshTimeout bounds one run of the OpenSSH client.
const sshTimeout = 30 * time.Second

// newSigner returns a fresh Ed25519 signer.
func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// shortTempDir is a temporary directory with a short path: Unix socket
// paths are limited to 108 bytes, and t.TempDir embeds the test name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sa")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// outcomes returns the outcome of every audit line with event ev in b, in
// order.
func outcomes(t testing.TB, b *logtest.Buffer, ev string) []string {
	t.Helper()
	var out []string
	for _, m := range b.Where(t, "event", ev) {
		s, _ := m["outcome"].(string)
		out = append(out, s)
	}
	return out
}

// agentHarness is a running restricted agent on a Unix socket.
type agentHarness struct {
	srv  *Server
	sock string
	logs *logtest.Buffer
	reg  *prometheus.Registry
}

// startAgent serves cfg (Logger and Registerer filled in) on a fresh socket
// until the test ends, and checks that Serve then returns cleanly.
func startAgent(t testing.TB, cfg Config) *agentHarness {
	t.Helper()
	h := &agentHarness{logs: &logtest.Buffer{}, reg: prometheus.NewPedanticRegistry()}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: h.logs, JSONFormat: true, Level: hclog.Debug})
	cfg.Registerer = h.reg
	srv, err := New(cfg)
	require.NoError(t, err)
	h.srv = srv
	h.sock = filepath.Join(shortTempDir(t), "agent.sock")
	l, err := net.Listen("unix", h.sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after its context ended", err)
		}
	})
	return h
}

// devvmWorld is a devvm double and a restricted agent that pins it.
type devvmWorld struct {
	agent      *agentHarness
	devvm      *devvmsim.Server
	devvmKey   ssh.Signer
	hostKey    ssh.Signer
	knownHosts string
}

// startDevvmWorld starts a devvm double letting in testUser with a fresh
// devvm key, and an agent holding that key and pinning the double.
func startDevvmWorld(t testing.TB) *devvmWorld {
	t.Helper()
	w := &devvmWorld{devvmKey: newSigner(t), hostKey: newSigner(t)}
	w.devvm = startDevvm(t, testUser, w.devvmKey.PublicKey(), w.hostKey)
	w.knownHosts = writeKnownHosts(t, w.devvm.KnownHostsLine())
	w.agent = startAgent(t, Config{Key: w.devvmKey, DevvmHostKeys: []ssh.PublicKey{w.hostKey.PublicKey()}, User: testUser})
	return w
}

func startDevvm(t testing.TB, user string, key ssh.PublicKey, hostKey ssh.Signer) *devvmsim.Server {
	t.Helper()
	s, err := devvmsim.Start(devvmsim.Config{User: user, AuthorizedKey: key, HostKey: hostKey})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func writeKnownHosts(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	require.NoError(t, os.WriteFile(p, b.Bytes(), 0o600))
	return p
}

// sshBin is the real OpenSSH client.
func sshBin(t testing.TB) string {
	t.Helper()
	return lookTool(t, "ssh")
}

// lookTool finds an OpenSSH client tool or fails the test saying how to get
// it.
func lookTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run make deps-apt (installs Debian's openssh-client)", name)
	}
	return p
}

// sshLogin describes one run of the real OpenSSH client through an agent.
type sshLogin struct {
	agentSock  string
	knownHosts string // "" means accept any host key
	port       int
	user       string
	extra      []string // more client options, before the destination
	command    string
}

// args builds the client's argv: no config file, no identity but the
// agent's, no prompt, host key checked against knownHosts.
func (l sshLogin) args() []string {
	args := []string{
		"-F", "/dev/null",
		"-o", "IdentityAgent=" + l.agentSock,
		"-o", "IdentityFile=none",
		"-o", "PubkeyAuthentication=yes",
		"-o", "PasswordAuthentication=no",
		"-o", "KbdInteractiveAuthentication=no",
		"-o", "BatchMode=yes",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(l.port),
	}
	if l.knownHosts == "" {
		args = append(args, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
	} else {
		args = append(args, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+l.knownHosts)
	}
	args = append(args, l.extra...)
	return append(args, l.user+"@127.0.0.1", l.command)
}

// run runs the client and returns its combined output and exit error.
func (l sshLogin) run(t testing.TB) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sshTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshBin(t), l.args()...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "ssh did not finish within %v: %s", sshTimeout, out)
	return string(out), err
}

// rawConn speaks the agent protocol frame by frame over a raw socket.
type rawConn struct {
	net.Conn
}

func dialRaw(t testing.TB, sock string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(sshTimeout)))
	return &rawConn{c}
}

// roundTrip sends one framed request and reads one framed reply.
func (c *rawConn) roundTrip(req []byte) ([]byte, error) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(req)))
	if _, err := c.Write(append(hdr[:], req...)); err != nil {
		return nil, err
	}
	return c.readReply()
}

func (c *rawConn) readReply() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	reply := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(c, reply)
	return reply, err
}

// closedByPeer reports whether the agent closed the connection: a read
// gets EOF (or a reset) rather than a reply.
func (c *rawConn) closedByPeer() bool {
	_, err := c.readReply()
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// bindBody is a session-bind@openssh.com body for sessionID, signed by
// hostKey.
func bindBody(t testing.TB, hostKey ssh.Signer, sessionID []byte, forwarding bool) []byte {
	t.Helper()
	sig, err := hostKey.Sign(rand.Reader, sessionID)
	require.NoError(t, err)
	return ssh.Marshal(sessionBindMsg{
		HostKey:      hostKey.PublicKey().Marshal(),
		SessionID:    sessionID,
		Signature:    ssh.Marshal(sig),
		IsForwarding: forwarding,
	})
}

// extensionReq frames an SSH_AGENTC_EXTENSION request.
func extensionReq(name string, body []byte) []byte {
	return ssh.Marshal(extensionMsg{Type: name, Contents: body})
}

// userauthData is what a client asks the agent to sign for a publickey
// login; hostKey non-nil makes it the hostbound form.
func userauthData(sessionID []byte, user string, key ssh.PublicKey, hostKey ssh.PublicKey) []byte {
	m := userauthMsg{
		SessionID: sessionID,
		Type:      msgUserauthRequest,
		User:      user,
		Service:   serviceConnect,
		Method:    methodPublicKey,
		HasSig:    true,
		Algorithm: key.Type(),
		PublicKey: key.Marshal(),
	}
	if hostKey != nil {
		m.Method = methodHostBound
		m.Rest = ssh.Marshal(hostKeyTail{HostKey: hostKey.Marshal()})
	}
	return ssh.Marshal(m)
}

// signReq frames an SSH_AGENTC_SIGN_REQUEST.
func signReq(key ssh.PublicKey, data []byte) []byte {
	return ssh.Marshal(signRequestMsg{KeyBlob: key.Marshal(), Data: data})
}

// sessionID returns n bytes of fresh session id.
func sessionID(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// writeKeyFile writes a private key file for the OpenSSH tools.
func writeKeyFile(t testing.TB) (string, ssh.PublicKey, ssh.Signer) {
	t.Helper()
	return sshdtest.WriteKey(t, t.TempDir())
}
