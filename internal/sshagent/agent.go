package sshagent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// ErrRefused is what every refused request returns. The client only ever
// sees SSH_AGENT_FAILURE; the reason is in the audit line.
var ErrRefused = errors.New("sshagent: refused")

// keyComment is the comment listed with the devvm key.
const keyComment = "breakglass devvm"

// bindState is where a connection stands with session-bind.
type bindState int

const (
	// stateUnbound: no bind yet; nothing is signed.
	stateUnbound bindState = iota
	// stateBound: one login bind to a pinned host; logins for that session
	// are signed.
	stateBound
	// stateForwarded: the connection is a forwarded agent channel; nothing
	// is signed, ever.
	stateForwarded
	// statePoisoned: a bind failed; nothing is signed, ever.
	statePoisoned
)

// connAgent is the agent for one connection: the bind state lives here, so
// a bind on one connection never lets another sign. It is deliberately not
// an agent.Agent: it has no method that adds, removes, locks or hands out a
// key (TestHardeningKeyNeverLeavesAndOnlyDevvmKeyListed).
type connAgent struct {
	s   *Server
	log hclog.Logger

	// mu protects the following.
	mu        sync.Mutex
	state     bindState
	refusal   Outcome // why signing is refused in stateForwarded/statePoisoned
	reason    string
	sessionID []byte
	hostKey   []byte // the bound host key, marshalled
	hostFP    string // its SHA256 fingerprint, for audit lines
}

func (s *Server) newConnAgent(peer peerCred) *connAgent {
	return &connAgent{s: s, log: s.log.With("uid", peer.uid, "pid", peer.pid)}
}

// List returns the devvm public key: the only key this agent has.
func (a *connAgent) List() ([]*agent.Key, error) {
	a.log.Debug("agent list", "event", "list")
	return []*agent.Key{{Format: a.s.key.PublicKey().Type(), Blob: a.s.keyBlob, Comment: keyComment}}, nil
}

// SignWithFlags signs data with the devvm key if and only if the policy
// allows it (see decide). Flags select the RSA SHA-2 algorithms.
func (a *connAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	ua, outcome, reason := a.decide(key, data, flags)
	if outcome != OutcomeSigned {
		a.signDecided(outcome, reason, ua)
		return nil, ErrRefused
	}
	sig, err := a.sign(data, ua.algorithm)
	if err != nil {
		a.signDecided(OutcomeMalformed, "signer failed", ua)
		return nil, ErrRefused
	}
	a.signDecided(OutcomeSigned, "", ua)
	return sig, nil
}

// decide is the sign policy. Every path but the last refuses.
func (a *connAgent) decide(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*userauth, Outcome, string) {
	a.mu.Lock()
	state, refusal, reason := a.state, a.refusal, a.reason
	boundSID, boundHost := a.sessionID, a.hostKey
	a.mu.Unlock()

	// WARNING: only a connection in stateBound reaches the checks below
	// (TestBindStates, TestHardeningForwardedAgentCannotSign).
	switch state {
	case stateBound:
	case stateForwarded, statePoisoned:
		return nil, refusal, reason
	default:
		return nil, OutcomeUnbound, "no session-bind on this connection"
	}
	if key == nil || !bytes.Equal(key.Marshal(), a.s.keyBlob) {
		return nil, OutcomeMalformed, "sign request for a key this agent does not hold"
	}
	ua, err := parseUserauth(data)
	if err != nil {
		return nil, OutcomeMalformed, err.Error()
	}
	switch {
	case !bytes.Equal(ua.sessionID, boundSID):
		return ua, OutcomeUnbound, "userauth session id differs from the bound one"
	case ua.user != a.s.user:
		return ua, OutcomeWrongUser, "userauth user is not the devvm user"
	case ua.hostKey != nil && !bytes.Equal(ua.hostKey, boundHost):
		return ua, OutcomeWrongHost, "hostbound userauth names another host key than the bound one"
	case !bytes.Equal(ua.publicKey, a.s.keyBlob):
		return ua, OutcomeMalformed, "userauth request names another key"
	case ua.algorithm != algorithmFor(key.Type(), flags):
		return ua, OutcomeMalformed, "userauth algorithm does not match the key and flags"
	}
	return ua, OutcomeSigned, ""
}

// algorithmFor is the signature algorithm a key of keyType signs with under
// flags (draft-miller-ssh-agent §4.5.1: the flags pick RSA's SHA-2 forms).
func algorithmFor(keyType string, flags agent.SignatureFlags) string {
	if keyType != ssh.KeyAlgoRSA {
		return keyType
	}
	switch {
	case flags&agent.SignatureFlagRsaSha512 != 0:
		return ssh.KeyAlgoRSASHA512
	case flags&agent.SignatureFlagRsaSha256 != 0:
		return ssh.KeyAlgoRSASHA256
	}
	return ssh.KeyAlgoRSA
}

// sign signs data with the devvm key using algorithm.
func (a *connAgent) sign(data []byte, algorithm string) (*ssh.Signature, error) {
	if algorithm == a.s.key.PublicKey().Type() {
		return a.s.key.Sign(rand.Reader, data)
	}
	as, ok := a.s.key.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("sign with %s: key has one algorithm only", algorithm)
	}
	return as.SignWithAlgorithm(rand.Reader, data, algorithm)
}

// Extension handles session-bind@openssh.com; every other extension is
// unsupported.
func (a *connAgent) Extension(extensionType string, contents []byte) ([]byte, error) {
	if extensionType != extSessionBind {
		a.refuse(requestExtension, "unsupported extension "+quoteName(extensionType))
		return nil, agent.ErrExtensionUnsupported
	}
	if err := a.bind(contents); err != nil {
		return nil, err
	}
	return nil, nil
}

// bind applies a session-bind to this connection. A connection gets one
// bind; any failure, and any second bind, leaves it unable to sign.
func (a *connAgent) bind(body []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	// WARNING: the state check comes before anything else, so no later
	// bind can replace a login bind or clear a failed one
	// (TestHardeningSecondBindRefusedAndPoisons,
	// TestHardeningFailedBindPoisonsConnection, TestBindStates).
	if a.state != stateUnbound {
		a.failLocked(OutcomeMalformed, "second session-bind on one connection", "")
		return ErrRefused
	}
	b, err := parseBind(body)
	if err != nil {
		a.failLocked(OutcomeMalformed, err.Error(), "")
		return ErrRefused
	}
	fp := ssh.FingerprintSHA256(b.hostKey)
	if !a.s.pinned(b.hostKey) {
		a.failLocked(OutcomeWrongHost, "host key is not pinned for the devvm", fp)
		return ErrRefused
	}
	if err := b.hostKey.Verify(b.sessionID, b.signature); err != nil {
		a.failLocked(OutcomeMalformed, "host key signature over the session id does not verify", fp)
		return ErrRefused
	}
	if b.forwarding {
		a.state, a.refusal, a.reason = stateForwarded, OutcomeForwarding, "connection is a forwarded agent"
		a.bindDecidedLocked(OutcomeForwarding, a.reason, fp)
		return ErrRefused
	}
	a.state = stateBound
	a.sessionID = bytes.Clone(b.sessionID)
	a.hostKey = b.hostKey.Marshal()
	a.hostFP = fp
	a.bindDecidedLocked(OutcomeBound, "", fp)
	return nil
}

// failLocked records a failed bind. The first refusal sticks: a forwarded
// connection that then tries a login bind still reports forwarding.
func (a *connAgent) failLocked(o Outcome, reason, fp string) {
	a.bindDecidedLocked(o, reason, fp)
	if a.state == stateForwarded || a.state == statePoisoned {
		return
	}
	a.state, a.refusal, a.reason = statePoisoned, o, "connection poisoned by a failed session-bind: "+reason
}

// pinned says whether k is one of the devvm's pinned host keys.
func (s *Server) pinned(k ssh.PublicKey) bool {
	blob := k.Marshal()
	for _, h := range s.hostKeys {
		if bytes.Equal(h, blob) {
			return true
		}
	}
	return false
}

// refuse counts and audits a refused request and returns the failure reply.
func (a *connAgent) refuse(r request, reason string) []byte {
	a.s.metrics.refused.WithLabelValues(string(r)).Inc()
	a.log.Warn("agent request refused", "event", "refused", "request", string(r), "reason", reason)
	return []byte{msgFailure}
}

// bindDecidedLocked counts and audits a bind decision.
func (a *connAgent) bindDecidedLocked(o Outcome, reason, fp string) {
	a.s.metrics.binds.WithLabelValues(string(o)).Inc()
	args := []any{"event", "bind", "outcome", string(o), "host_key", fp}
	if o == OutcomeBound {
		a.log.Info("agent session bound", args...)
		return
	}
	a.log.Warn("agent session-bind refused", append(args, "reason", reason)...)
}

// signDecided counts and audits a sign decision. ua may be nil when the
// request was refused before its data was parsed.
func (a *connAgent) signDecided(o Outcome, reason string, ua *userauth) {
	a.s.metrics.signs.WithLabelValues(string(o)).Inc()
	a.mu.Lock()
	fp := a.hostFP
	a.mu.Unlock()
	args := []any{"event", "sign", "outcome", string(o), "host_key", fp}
	if ua != nil {
		args = append(args, "user", quoteName(ua.user), "method", quoteName(ua.method))
	}
	if o == OutcomeSigned {
		a.log.Info("agent signed devvm login", args...)
		return
	}
	a.log.Warn("agent sign refused", append(args, "reason", reason)...)
}

// maxLoggedName bounds names from the wire in audit lines.
const maxLoggedName = 64

// quoteName makes a peer-supplied name safe for an audit line: bounded, and
// quoted when it holds anything but printable ASCII.
func quoteName(s string) string {
	if len(s) > maxLoggedName {
		s = s[:maxLoggedName] + "..."
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
