package pvesim_test

import (
	"bytes"
	"errors"
	"time"

	"golang.org/x/crypto/ssh"
)

// runNoT is s.run without a *testing.T, for other goroutines (never
// require from another goroutine).
func runNoT(s *sim, command string) (string, string, int) {
	c, err := ssh.Dial("tcp", s.srv.Addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.client)},
		HostKeyCallback: ssh.FixedHostKey(s.host.PublicKey()),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return "", err.Error(), -1
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err.Error(), -1
	}
	defer sess.Close()
	var o, e bytes.Buffer
	sess.Stdout, sess.Stderr = &o, &e
	err = sess.Run(command)
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0
	case errors.As(err, &exitErr):
		return o.String(), e.String(), exitErr.ExitStatus()
	}
	return o.String(), err.Error(), -1
}
