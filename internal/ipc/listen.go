package ipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SocketMode is the permission of every socket Listen creates: the owner and
// the shared group may connect, nobody else.
const SocketMode fs.FileMode = 0o660

// dirMode is the permission of a socket directory Listen has to create.
const dirMode fs.FileMode = 0o750

// staleProbeTimeout bounds the dial that tells a live socket from a stale one.
const staleProbeTimeout = time.Second

// Errors of Listen, checked with errors.Is.
var (
	// ErrInUse: a live server already answers on the socket path.
	ErrInUse = errors.New("socket in use by a running server")
	// ErrNotSocket: something other than a socket sits at the socket path;
	// Listen never removes it.
	ErrNotSocket = errors.New("not a socket")
)

// Cred is what the kernel says about the process at the other end of a
// connection (SO_PEERCRED), read once when the connection is accepted.
type Cred struct {
	UID uint32
	GID uint32
	PID int32
}

// Listener is a Unix socket listener whose connections carry their peer's
// credentials. Close removes the socket file, if it is still the one Listen
// created.
type Listener struct {
	ul   *net.UnixListener
	path string
	info fs.FileInfo

	closeOnce sync.Once
	closeErr  error
}

var _ net.Listener = (*Listener)(nil)

// Listen creates the Unix socket at path. The directory is created (0750) if
// missing. A stale socket at path (nothing answers it) is replaced; a live
// one is refused with ErrInUse, and anything that is not a socket with
// ErrNotSocket. The socket is bound under a temporary name, set to
// SocketMode, and only then renamed to path, so it is never reachable under
// path with a wider mode. Every step inside the directory goes through an
// os.Root, so a symlink planted there (the directory may be shared and
// writable, like a Kubernetes emptyDir) is never followed out of it.
func Listen(path string) (*Listener, error) {
	if path == "" {
		return nil, errors.New("listen: empty socket path")
	}
	dir, name := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create socket directory %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open socket directory %s: %w", dir, err)
	}
	defer root.Close()
	if err := removeStale(root, name); err != nil {
		return nil, err
	}
	tmp := "." + name + ".new"
	if err := removeStale(root, tmp); err != nil {
		return nil, err
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, tmp), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", filepath.Join(dir, tmp), err)
	}
	// Close must remove the final name, not the temporary one, and only
	// while it is still ours: Listener.Close does that itself.
	ul.SetUnlinkOnClose(false)
	info, err := publish(root, tmp, name)
	if err != nil {
		_ = ul.Close()
		_ = root.Remove(tmp)
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return &Listener{ul: ul, path: path, info: info}, nil
}

// publish gives the socket bound at tmp its mode and renames it to name,
// both inside root: a symlink swapped in at tmp can never take the chmod to
// a file outside the socket directory (TestPublishNeverLeavesSocketDir).
func publish(root *os.Root, tmp, name string) (fs.FileInfo, error) {
	if err := root.Chmod(tmp, SocketMode); err != nil {
		return nil, fmt.Errorf("chmod: %w", err)
	}
	if err := root.Rename(tmp, name); err != nil {
		return nil, fmt.Errorf("rename: %w", err)
	}
	// Check afterwards that the result holds: the file under name is a
	// socket with exactly SocketMode (TestListenSocketMode guards this).
	info, err := root.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if info.Mode().Type() != fs.ModeSocket || info.Mode().Perm() != SocketMode {
		return nil, fmt.Errorf("mode %v, want socket %v", info.Mode(), SocketMode)
	}
	return info, nil
}

// removeStale removes name from root if it is a socket nobody answers on.
func removeStale(root *os.Root, name string) error {
	path := filepath.Join(root.Name(), name)
	info, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s: %w (mode %v); remove it by hand if it is not needed", path, ErrNotSocket, info.Mode())
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Accept waits for the next connection and returns it as a *Conn carrying
// the peer's credentials. A connection whose credentials cannot be read is
// closed and never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.ul.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err != nil {
			_ = c.Close()
			continue
		}
		return &Conn{UnixConn: c, cred: cred}, nil
	}
}

// Close stops accepting and removes the socket file if it is still the one
// Listen created (a successor's socket is left alone). It is safe to call
// more than once.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.ul.Close()
		if info, err := os.Lstat(l.path); err == nil && os.SameFile(info, l.info) {
			if err := os.Remove(l.path); err != nil && l.closeErr == nil {
				l.closeErr = fmt.Errorf("remove socket %s: %w", l.path, err)
			}
		}
	})
	return l.closeErr
}

// Conn is an accepted connection and its peer's credentials.
type Conn struct {
	*net.UnixConn
	cred Cred

	// release, if set, is called once by the first Close.
	release   func()
	closeOnce sync.Once
}

// Close closes the connection and gives back its place under Serve's
// connection cap.
func (c *Conn) Close() error {
	err := c.UnixConn.Close()
	c.closeOnce.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// Cred returns the peer's credentials as read at accept.
func (c *Conn) Cred() Cred { return c.cred }

// peerCred reads SO_PEERCRED from the connection's socket.
func peerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		uc   *unix.Ucred
		uerr error
	)
	if err := raw.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", uerr)
	}
	return Cred{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}, nil
}

// credKey is the context key under which Serve stores a request's Cred.
type credKey struct{}

// WithCred returns ctx carrying cred; Serve does this for every connection.
func WithCred(ctx context.Context, cred Cred) context.Context {
	return context.WithValue(ctx, credKey{}, cred)
}

// PeerCred returns the credentials of the process that sent the request
// whose context is ctx. ok is false when there are none (not served by
// Serve), and a handler must then refuse.
func PeerCred(ctx context.Context) (cred Cred, ok bool) {
	cred, ok = ctx.Value(credKey{}).(Cred)
	return cred, ok
}
