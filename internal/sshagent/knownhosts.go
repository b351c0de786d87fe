package sshagent

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrNotPinned means the known_hosts file has no Ed25519 key for the host.
var ErrNotPinned = errors.New("sshagent: no ssh-ed25519 host key pinned")

// LoadHostKeys returns the Ed25519 host keys the OpenSSH known_hosts file at
// path pins for hostport, an IP address and port ("10.0.10.10:22"), with
// OpenSSH's matching rules (`[host]:port` entries for ports other than 22,
// hashed names, negations); revoked keys are not returned. Keys of other
// types are ignored. It fails with ErrNotPinned when none is left.
func LoadHostKeys(path, hostport string) ([]ssh.PublicKey, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("devvm address %q: %w", hostport, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("devvm address %q: host must be an IP address", hostport)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("devvm address %q: bad port", hostport)
	}
	check, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	// The knownhosts package only reveals what it pins for a host by
	// refusing another key: probe with a fresh one, which no file pins.
	_, probePriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate probe key: %w", err)
	}
	probe, err := ssh.NewPublicKey(probePriv.Public())
	if err != nil {
		return nil, fmt.Errorf("probe key: %w", err)
	}
	remote := &net.TCPAddr{IP: ip, Port: port}
	err = check(hostport, remote, probe)
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return nil, fmt.Errorf("%w for %s in %s", ErrNotPinned, hostport, path)
	}
	var keys []ssh.PublicKey
	for _, k := range keyErr.Want {
		// Want lists every line for the host; asking again drops keys an
		// @revoked line names.
		if k.Key.Type() == ssh.KeyAlgoED25519 && check(hostport, remote, k.Key) == nil {
			keys = append(keys, k.Key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w for %s in %s", ErrNotPinned, hostport, path)
	}
	return keys, nil
}
