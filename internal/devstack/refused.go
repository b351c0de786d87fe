package devstack

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// refusedPort is a loopback port that refuses every connection for as long
// as it is held: a TCP socket bound to it that never listens. A port
// closed after a bind could be taken by the next test that asks for a
// free one (its host would then answer with the wrong key); a bound socket
// keeps it, and without SO_REUSEADDR no one else can bind it.
type refusedPort struct {
	fd   int
	addr string
}

func holdRefusedPort() (*refusedPort, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("refused port: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("refused port: bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("refused port: %w", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return &refusedPort{fd: fd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
}

// Close lets the port go.
func (r *refusedPort) Close() error { return syscall.Close(r.fd) }
