package pvegate

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultLockPath is the host lock mutating verbs take. It is in /run, which
// only root can write, not in the world-writable /run/lock, where any local
// user could create it first and hold it.
const DefaultLockPath = "/run/pve-gate.lock"

// ErrBusy is returned by Locker.TryLock when another mutating verb holds the
// lock. The gate answers it with ExitBusy at once; it never queues.
var ErrBusy = errors.New("busy: another mutating verb is running on this host")

// Locker is the host lock of mutating verbs: one at a time, whichever key or
// session asks.
type Locker interface {
	// TryLock takes the lock without waiting and returns the function that
	// releases it, or an error wrapping ErrBusy when it is held.
	TryLock() (unlock func(), err error)
}

// FileLock is a Locker on flock(2) of a file: it holds across processes
// (every pve-gate on the host) and within one (each TryLock opens the file
// anew), and the kernel drops it when the holder dies.
type FileLock struct {
	// Path is the lock file, created 0600 if missing.
	Path string
}

var _ Locker = FileLock{}

// TryLock implements Locker.
func (l FileLock) TryLock() (func(), error) {
	f, err := os.OpenFile(l.Path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", l.Path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (lock %s)", ErrBusy, l.Path)
		}
		return nil, fmt.Errorf("lock %s: %w", l.Path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
