package sshagent

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// MaxSessionIDBytes bounds a session id, as OpenSSH's agent does: the
// exchange hash of the largest key exchange (SHA-512) is 64 bytes.
const MaxSessionIDBytes = 128

// Names on the wire.
const (
	extSessionBind     = "session-bind@openssh.com"
	methodPublicKey    = "publickey"
	methodHostBound    = "publickey-hostbound-v00@openssh.com"
	serviceConnect     = "ssh-connection"
	msgUserauthRequest = 50 // SSH_MSG_USERAUTH_REQUEST, RFC 4252 §6
)

// errMalformed marks a request that does not parse or has the wrong shape.
// The wrapped text is fixed (it never echoes the input) and goes into the
// audit line's reason.
var errMalformed = errors.New("malformed")

func malformed(reason string) error {
	return fmt.Errorf("%w: %s", errMalformed, reason)
}

// sessionBindMsg is the body of the session-bind@openssh.com extension after
// its name (OpenSSH PROTOCOL.agent §1).
type sessionBindMsg struct {
	HostKey      []byte
	SessionID    []byte
	Signature    []byte
	IsForwarding bool
}

// bindRequest is a session-bind whose shape has been checked; the host key
// pin and the signature are the caller's to check.
type bindRequest struct {
	hostKey    ssh.PublicKey
	sessionID  []byte
	signature  *ssh.Signature
	forwarding bool
}

// parseBind decodes a session-bind body with no trailing bytes allowed.
func parseBind(body []byte) (*bindRequest, error) {
	var m sessionBindMsg
	if err := ssh.Unmarshal(body, &m); err != nil {
		return nil, malformed("session-bind does not parse")
	}
	if len(m.SessionID) == 0 || len(m.SessionID) > MaxSessionIDBytes {
		return nil, malformed("session id length out of bounds")
	}
	hostKey, err := ssh.ParsePublicKey(m.HostKey)
	if err != nil {
		return nil, malformed("session-bind host key does not parse")
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(m.Signature, sig); err != nil {
		return nil, malformed("session-bind signature does not parse")
	}
	return &bindRequest{hostKey: hostKey, sessionID: m.SessionID, signature: sig, forwarding: m.IsForwarding}, nil
}

// userauthMsg is the data a client signs for public key authentication:
// RFC 4252 §7, and OpenSSH's publickey-hostbound-v00@openssh.com (PROTOCOL
// §2.5), which appends the server's host key as one more string (in Rest).
type userauthMsg struct {
	SessionID []byte
	Type      byte
	User      string
	Service   string
	Method    string
	HasSig    bool
	Algorithm string
	PublicKey []byte
	Rest      []byte `ssh:"rest"`
}

// userauth is a checked userauth request.
type userauth struct {
	sessionID []byte
	user      string
	method    string
	algorithm string
	publicKey []byte
	hostKey   []byte // the hostbound form's server host key; nil for publickey
}

// hostKeyTail is the hostbound form's extra field.
type hostKeyTail struct {
	HostKey []byte
}

// parseUserauth decodes data as a userauth request with no trailing bytes
// and checks its fixed fields. Which user, session and key it names is the
// policy's to check.
func parseUserauth(data []byte) (*userauth, error) {
	var m userauthMsg
	if err := ssh.Unmarshal(data, &m); err != nil {
		return nil, malformed("data is not a userauth request")
	}
	switch {
	case len(m.SessionID) == 0 || len(m.SessionID) > MaxSessionIDBytes:
		return nil, malformed("session id length out of bounds")
	case m.Type != msgUserauthRequest:
		return nil, malformed("data is not a userauth request")
	case m.Service != serviceConnect:
		return nil, malformed("userauth service is not ssh-connection")
	case !m.HasSig:
		return nil, malformed("userauth request without the signature flag")
	}
	u := &userauth{
		sessionID: m.SessionID,
		user:      m.User,
		method:    m.Method,
		algorithm: m.Algorithm,
		publicKey: m.PublicKey,
	}
	switch m.Method {
	case methodPublicKey:
		if len(m.Rest) != 0 {
			return nil, malformed("trailing bytes after userauth request")
		}
	case methodHostBound:
		var tail hostKeyTail
		if err := ssh.Unmarshal(m.Rest, &tail); err != nil {
			return nil, malformed("hostbound userauth request without exactly one host key")
		}
		if len(tail.HostKey) == 0 {
			return nil, malformed("hostbound userauth request with an empty host key")
		}
		u.hostKey = tail.HostKey
	default:
		return nil, malformed("userauth method is not publickey")
	}
	return u, nil
}
