package sshagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// MaxRequestBytes bounds one agent request. A login's largest request, the
// sign request, is well under 4 KiB; x/crypto's own ServeAgent would accept
// 16 MiB.
const MaxRequestBytes = 256 << 10

// ErrFrameSize means a request's length prefix was zero or over
// MaxRequestBytes: the connection is closed.
var ErrFrameSize = errors.New("sshagent: request size out of bounds")

// Message numbers, from draft-miller-ssh-agent §5.1 (OpenSSH PROTOCOL.agent).
const (
	msgFailure            = 5
	msgSuccess            = 6
	msgRequestIdentities  = 11
	msgIdentitiesAnswer   = 12
	msgSignRequest        = 13
	msgSignResponse       = 14
	msgAddIdentity        = 17
	msgRemoveIdentity     = 18
	msgRemoveAll          = 19
	msgAddSmartcardKey    = 20
	msgRemoveSmartcardKey = 21
	msgLock               = 22
	msgUnlock             = 23
	msgAddIDConstrained   = 25
	msgAddSmartcardConstr = 26
	msgExtension          = 27
)

// signRequestMsg is SSH_AGENTC_SIGN_REQUEST (draft-miller-ssh-agent §4.5).
type signRequestMsg struct {
	KeyBlob []byte `sshtype:"13"`
	Data    []byte
	Flags   uint32
}

// signResponseMsg is SSH_AGENT_SIGN_RESPONSE.
type signResponseMsg struct {
	SigBlob []byte `sshtype:"14"`
}

// extensionMsg is SSH_AGENTC_EXTENSION (draft-miller-ssh-agent §4.8).
type extensionMsg struct {
	Type     string `sshtype:"27"`
	Contents []byte `ssh:"rest"`
}

// identitiesAnswerMsg is SSH_AGENT_IDENTITIES_ANSWER; Keys holds NumKeys
// (string key blob, string comment) pairs.
type identitiesAnswerMsg struct {
	NumKeys uint32 `sshtype:"12"`
	Keys    []byte `ssh:"rest"`
}

// serveFrames answers agent requests on c, in order, until c fails, a
// request breaks the framing, the rest of a request takes longer than
// timeout after its first byte, or the peer leaves a reply unread for
// longer than timeout. It replaces agent.ServeAgent, which writes
// refusals to the standard log package, reads up to 16 MiB and answers the
// legacy SSH1 requests with success.
func serveFrames(a *connAgent, c net.Conn, timeout time.Duration) error {
	var hdr [4]byte
	for {
		// Wait for a request as long as it takes, then give the rest of
		// it a deadline.
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		if _, err := io.ReadFull(c, hdr[1:]); err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > MaxRequestBytes {
			return fmt.Errorf("%w: %d bytes", ErrFrameSize, n)
		}
		// Read what arrives rather than allocate the announced size up
		// front: a peer announcing MaxRequestBytes and stalling holds
		// only what it sent, until the request timeout closes it.
		req, err := io.ReadAll(io.LimitReader(c, int64(n)))
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if len(req) != int(n) {
			return fmt.Errorf("read request: %w", io.ErrUnexpectedEOF)
		}
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("clear read deadline: %w", err)
		}
		reply := a.handle(req)
		out := make([]byte, 4+len(reply))
		binary.BigEndian.PutUint32(out, uint32(len(reply)))
		copy(out[4:], reply)
		if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
		if _, err := c.Write(out); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
	}
}

// handle answers one request. The table is fixed: list, sign and the
// session-bind extension have answers; everything else is refused.
func (a *connAgent) handle(req []byte) []byte {
	switch req[0] {
	case msgRequestIdentities:
		if len(req) != 1 {
			return a.refuse(requestUnknown, "identities request with a body")
		}
		return a.identitiesAnswer()
	case msgSignRequest:
		var m signRequestMsg
		if err := ssh.Unmarshal(req, &m); err != nil {
			a.signDecided(OutcomeMalformed, "unparsable sign request", nil)
			return []byte{msgFailure}
		}
		key, err := ssh.ParsePublicKey(m.KeyBlob)
		if err != nil {
			a.signDecided(OutcomeMalformed, "unparsable key in sign request", nil)
			return []byte{msgFailure}
		}
		sig, err := a.SignWithFlags(key, m.Data, agent.SignatureFlags(m.Flags))
		if err != nil {
			return []byte{msgFailure}
		}
		return ssh.Marshal(signResponseMsg{SigBlob: ssh.Marshal(sig)})
	case msgExtension:
		var m extensionMsg
		if err := ssh.Unmarshal(req, &m); err != nil {
			return a.refuse(requestExtension, "unparsable extension request")
		}
		if _, err := a.Extension(m.Type, m.Contents); err != nil {
			return []byte{msgFailure}
		}
		return []byte{msgSuccess}
	case msgAddIdentity, msgAddIDConstrained, msgAddSmartcardKey, msgAddSmartcardConstr:
		return a.refuse(requestAdd, "")
	case msgRemoveIdentity, msgRemoveSmartcardKey:
		return a.refuse(requestRemove, "")
	case msgRemoveAll:
		return a.refuse(requestRemoveAll, "")
	case msgLock:
		return a.refuse(requestLock, "")
	case msgUnlock:
		return a.refuse(requestUnlock, "")
	default:
		return a.refuse(requestUnknown, fmt.Sprintf("opcode %d", req[0]))
	}
}

// identitiesAnswer lists the devvm key, and only it.
func (a *connAgent) identitiesAnswer() []byte {
	keys, _ := a.List()
	var body []byte
	for _, k := range keys {
		body = append(body, ssh.Marshal(struct {
			Blob    []byte
			Comment string
		}{k.Blob, k.Comment})...)
	}
	return ssh.Marshal(identitiesAnswerMsg{NumKeys: uint32(len(keys)), Keys: body})
}
