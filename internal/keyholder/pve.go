package keyholder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// MaxConcurrentVerbs bounds the verbs running at once, whatever their kind:
// each is a root login and qm processes on the Proxmox host, and up to
// MaxOutput of memory here.
const MaxConcurrentVerbs = 8

// MaxOutput caps a verb's output (stdout and stderr together). More is read
// and dropped, so the remote command still ends normally, and the answer says
// how much was dropped.
const MaxOutput = 1 << 20

// Errors of a verb run, checked with errors.Is. The HTTP handler maps each to
// one status.
var (
	// ErrBusy: a mutating verb is already running (409).
	ErrBusy = errors.New("a mutating verb is already running")
	// ErrTooMany: MaxConcurrentVerbs verbs are already running (429).
	ErrTooMany = errors.New("too many verbs running")
	// ErrHostKeyMismatch: the Proxmox host presented a key known_hosts does
	// not pin for it (502). Nothing was run.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrSSH: the SSH connection or session failed (502).
	ErrSSH = errors.New("ssh to the Proxmox host failed")
	// ErrUnreachable: no TCP connection to the Proxmox host (504).
	ErrUnreachable = errors.New("Proxmox host unreachable")
	// ErrTimeout: the verb did not finish within the verb timeout (504).
	ErrTimeout = errors.New("verb timed out")
	// ErrClosed: the keyholder is shutting down (503).
	ErrClosed = errors.New("keyholder shutting down")
)

// pveClient runs one command on the Proxmox host per connection.
type pveClient struct {
	addr     string
	user     string
	signer   ssh.Signer
	hostKeys ssh.HostKeyCallback
	algos    []string
	dialer   net.Dialer
}

// run dials the Proxmox host, verifies its key, runs command and writes its
// stdout and stderr to the two writers (which may be the same). It returns the remote exit code, or an error wrapping one
// of the sentinels above. ctx bounds everything: when it ends the
// connection is closed.
func (p *pveClient) run(ctx context.Context, command string, stdout, stderr io.Writer) (int, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("dial %s: %w", p.addr, ErrTimeout)
		}
		return 0, fmt.Errorf("dial %s: %w: %w", p.addr, ErrUnreachable, err)
	}
	// Closing the connection is what unblocks a silent host mid-handshake
	// or a command that never ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	// The callback runs on the handshake's own goroutine.
	var mismatch atomic.Bool
	cfg := &ssh.ClientConfig{
		User: p.user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(p.signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := p.hostKeys(host, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				mismatch.Store(true)
				return fmt.Errorf("%w: %s presented %s %s", ErrHostKeyMismatch, host, key.Type(), ssh.FingerprintSHA256(key))
			}
			return err
		},
		HostKeyAlgorithms: p.algos,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, p.addr, cfg)
	if err != nil {
		switch {
		case mismatch.Load():
			return 0, fmt.Errorf("ssh %s: %w", p.addr, ErrHostKeyMismatch)
		case ctx.Err() != nil:
			return 0, fmt.Errorf("ssh %s: %w", p.addr, ErrTimeout)
		}
		return 0, fmt.Errorf("ssh %s: %w: %w", p.addr, ErrSSH, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("ssh session: %w", ErrTimeout)
		}
		return 0, fmt.Errorf("ssh session: %w: %w", ErrSSH, err)
	}
	defer sess.Close()
	sess.Stdout = stdout
	sess.Stderr = stderr
	err = sess.Run(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.ExitStatus(), nil
	case ctx.Err() != nil:
		return 0, fmt.Errorf("run %s: %w", verbOf(command), ErrTimeout)
	}
	return 0, fmt.Errorf("run %s: %w: %w", verbOf(command), ErrSSH, err)
}

// verbOf is the verb of a command line, for errors (an argv is not
// repeated there).
func verbOf(command string) string {
	v, _, _ := strings.Cut(command, " ")
	return v
}

// capWriter keeps the first max bytes written to it and counts the rest. It
// is safe for the session's stdout and stderr copiers at once.
type capWriter struct {
	max int

	// mu protects the following.
	mu      sync.Mutex
	buf     []byte
	dropped int64
}

func newCapWriter(max int) *capWriter { return &capWriter{max: max} }

// Write never fails, so the remote command is never blocked by the cap.
func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.max - len(w.buf)
	if room >= len(p) {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		w.buf = append(w.buf, p[:room]...)
	}
	w.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

// result returns the kept output and whether some was dropped; when it was,
// the output is cut back to a whole UTF-8 character and ends with a line
// saying how much was dropped.
func (w *capWriter) result() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dropped == 0 {
		return string(w.buf), false
	}
	kept := w.buf
	dropped := w.dropped
	// Do not end on half a character: drop an incomplete trailing one.
	for i := len(kept) - 1; i >= 0 && i >= len(kept)-utf8.UTFMax; i-- {
		if utf8.RuneStart(kept[i]) {
			if !utf8.FullRune(kept[i:]) {
				dropped += int64(len(kept) - i)
				kept = kept[:i]
			}
			break
		}
	}
	return fmt.Sprintf("%s\n[output truncated: %d bytes over the %d-byte limit were dropped]\n", kept, dropped, w.max), true
}
