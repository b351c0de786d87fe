package sshagent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// One test per security property of the agent; each names the attack it
// blocks. The attacker is whoever can open agent.sock: in production, a
// compromised web container.

// Attack: point the devvm key at a host the attacker controls (or a
// man-in-the-middle with its own host key) and log in there with it.
func TestHardeningPhishingHostGetsNoSignature(t *testing.T) {
	w := startRawWorld(t)
	c := dialRaw(t, w.sock)
	sid := sessionID(t, 32)
	reply, err := c.roundTrip(extensionReq(extSessionBind, bindBody(t, newSigner(t), sid, false)))
	require.NoError(t, err)
	assert.Equal(t, []byte{msgFailure}, reply)
	reply, err = c.roundTrip(signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)))
	require.NoError(t, err)
	assert.Equal(t, []byte{msgFailure}, reply)
	assert.Equal(t, []string{"wrong_host"}, outcomes(t, w.logs, "sign"))
}

// Attack: claim the pinned host key in a bind without holding it (a
// signature over the session id by another key).
func TestHardeningForgedBindSignatureRefused(t *testing.T) {
	f := newPolicyFixture(t)
	a := f.a.s.newConnAgent(peerCred{})
	sid := sessionID(t, 32)
	var m sessionBindMsg
	require.NoError(t, ssh.Unmarshal(bindBody(t, f.otherKey, sid, false), &m))
	m.HostKey = f.hostKey.PublicKey().Marshal()
	_, err := a.Extension(extSessionBind, ssh.Marshal(m))
	require.ErrorIs(t, err, ErrRefused)
	_, outcome, _ := a.decide(f.devvmKey.PublicKey(), userauthData(sid, testUser, f.devvmKey.PublicKey(), nil), 0)
	assert.Equal(t, OutcomeMalformed, outcome)
}

// Attack: sign without ever binding (a plain agent client, or an old ssh),
// so no host is checked at all.
func TestHardeningUnboundConnectionCannotSign(t *testing.T) {
	w := startRawWorld(t)
	conn, err := net.Dial("unix", w.sock)
	require.NoError(t, err)
	defer conn.Close()
	_, err = agent.NewClient(conn).Sign(w.devvmKey.PublicKey(), userauthData(sessionID(t, 32), testUser, w.devvmKey.PublicKey(), nil))
	require.Error(t, err)
	assert.Equal(t, []string{"unbound"}, outcomes(t, w.logs, "sign"))
}

// Attack: bind one connection legitimately, then sign on another one (bind
// state shared across connections would let any client ride on a real
// login's bind).
func TestHardeningBindDoesNotCrossConnections(t *testing.T) {
	w := startRawWorld(t)
	sid := sessionID(t, 32)
	bound := dialRaw(t, w.sock)
	reply, err := bound.roundTrip(extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)))
	require.NoError(t, err)
	require.Equal(t, []byte{msgSuccess}, reply)
	other := dialRaw(t, w.sock)
	reply, err = other.roundTrip(signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)))
	require.NoError(t, err)
	assert.Equal(t, []byte{msgFailure}, reply)
	assert.Equal(t, []string{"unbound"}, outcomes(t, w.logs, "sign"))
}

// Attack: use the agent through ssh -A from the devvm (or any hop) to log
// in somewhere else, or back to the devvm from a host that should not hold
// the key.
func TestHardeningForwardedAgentCannotSign(t *testing.T) {
	f := newPolicyFixture(t)
	a := f.a.s.newConnAgent(peerCred{})
	sid := sessionID(t, 32)
	_, err := a.Extension(extSessionBind, bindBody(t, f.hostKey, sessionID(t, 32), true))
	require.ErrorIs(t, err, ErrRefused)
	// The onward ssh then binds its own session: still refused.
	_, err = a.Extension(extSessionBind, bindBody(t, f.hostKey, sid, false))
	require.ErrorIs(t, err, ErrRefused)
	_, outcome, _ := a.decide(f.devvmKey.PublicKey(), userauthData(sid, testUser, f.devvmKey.PublicKey(), nil), 0)
	assert.Equal(t, OutcomeForwarding, outcome)
}

// Attack: after a legitimate bind, re-bind the connection to another host
// (or another session) and have that signed.
func TestHardeningSecondBindRefusedAndPoisons(t *testing.T) {
	f := newPolicyFixture(t)
	sid := sessionID(t, 32)
	_, err := f.a.Extension(extSessionBind, bindBody(t, f.otherKey, sid, false))
	require.ErrorIs(t, err, ErrRefused)
	for _, s := range [][]byte{sid, f.boundSID} {
		_, outcome, _ := f.a.decide(f.devvmKey.PublicKey(), userauthData(s, testUser, f.devvmKey.PublicKey(), nil), 0)
		assert.Equal(t, OutcomeMalformed, outcome)
	}
}

// Attack: try binds until one sticks (a failed bind followed by a good one).
func TestHardeningFailedBindPoisonsConnection(t *testing.T) {
	f := newPolicyFixture(t)
	a := f.a.s.newConnAgent(peerCred{})
	sid := sessionID(t, 32)
	_, err := a.Extension(extSessionBind, []byte("junk"))
	require.ErrorIs(t, err, ErrRefused)
	_, err = a.Extension(extSessionBind, bindBody(t, f.hostKey, sid, false))
	require.ErrorIs(t, err, ErrRefused)
	_, outcome, _ := a.decide(f.devvmKey.PublicKey(), userauthData(sid, testUser, f.devvmKey.PublicKey(), nil), 0)
	assert.Equal(t, OutcomeMalformed, outcome)
}

// Attack: oversized session ids (OpenSSH's agent refuses over 128 bytes).
func TestHardeningOversizedSessionIDRefused(t *testing.T) {
	f := newPolicyFixture(t)
	a := f.a.s.newConnAgent(peerCred{})
	_, err := a.Extension(extSessionBind, bindBody(t, f.hostKey, sessionID(t, MaxSessionIDBytes+1), false))
	assert.ErrorIs(t, err, ErrRefused)
}

// Attack: replay a bound session's id in a login for another session, or
// sign a login as another user (root) on the right host.
func TestHardeningLoginForOtherSessionOrUserRefused(t *testing.T) {
	f := newPolicyFixture(t)
	key := f.devvmKey.PublicKey()
	_, outcome, _ := f.a.decide(key, userauthData(sessionID(t, 32), testUser, key, nil), 0)
	assert.Equal(t, OutcomeUnbound, outcome)
	_, outcome, _ = f.a.decide(key, userauthData(f.boundSID, "root", key, nil), 0)
	assert.Equal(t, OutcomeWrongUser, outcome)
}

// Attack: a hostbound login naming another server's host key than the one
// the connection is bound to (server-side confusion between hops).
func TestHardeningHostboundHostKeyMustMatchBind(t *testing.T) {
	f := newPolicyFixture(t)
	key := f.devvmKey.PublicKey()
	_, outcome, _ := f.a.decide(key, userauthData(f.boundSID, testUser, key, f.otherKey.PublicKey()), 0)
	assert.Equal(t, OutcomeWrongHost, outcome)
}

// Attack: use the agent as a general signing oracle (git commits, SSHSIG
// files, TLS handshakes, a userauth with trailing bytes) on a bound
// connection.
func TestHardeningNotASigningOracle(t *testing.T) {
	f := newPolicyFixture(t)
	key := f.devvmKey.PublicKey()
	valid := userauthData(f.boundSID, testUser, key, nil)
	for name, data := range map[string][]byte{
		"git-commit": []byte("tree 4b825dc6\nauthor mallory\n\nmerge me"),
		"sshsig":     append([]byte("SSHSIG"), valid...),
		"tls-digest": make([]byte, 32),
		"trailing":   append(append([]byte{}, valid...), 0),
	} {
		_, outcome, _ := f.a.decide(key, data, 0)
		assert.Equal(t, OutcomeMalformed, outcome, name)
	}
}

// Attack: copy the key out of the agent, or reach the PVE key through it.
func TestHardeningKeyNeverLeavesAndOnlyDevvmKeyListed(t *testing.T) {
	w := startRawWorld(t)
	conn, err := net.Dial("unix", w.sock)
	require.NoError(t, err)
	defer conn.Close()
	client := agent.NewClient(conn)
	keys, err := client.List()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, w.devvmKey.PublicKey().Marshal(), keys[0].Blob)
	// No message carries private key material: the agent protocol has no
	// export request, and in-process the per-connection agent has no
	// Signers (nor Add, Remove, Lock…): it is not an agent.Agent.
	_, isAgent := any(w.srv.newConnAgent(peerCred{})).(agent.Agent)
	assert.False(t, isAgent, "the per-connection agent must not grow agent.Agent's key-handling methods")
}

// Attack: plant a key of the attacker's, remove or lock the devvm key to
// lock the operator out, or unlock with a guessed passphrase.
func TestHardeningKeyManagementRefused(t *testing.T) {
	w := startRawWorld(t)
	conn, err := net.Dial("unix", w.sock)
	require.NoError(t, err)
	defer conn.Close()
	client := agent.NewClient(conn)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	planted, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	assert.Error(t, client.Add(agent.AddedKey{PrivateKey: priv}))
	assert.Error(t, client.Remove(w.devvmKey.PublicKey()))
	assert.Error(t, client.RemoveAll())
	assert.Error(t, client.Lock([]byte("x")))
	assert.Error(t, client.Unlock([]byte("x")))
	keys, err := client.List()
	require.NoError(t, err)
	require.Len(t, keys, 1, "the devvm key is still there, nothing was planted")
	assert.Equal(t, w.devvmKey.PublicKey().Marshal(), keys[0].Blob)
	assert.NotEqual(t, planted.PublicKey().Marshal(), keys[0].Blob)
	w.requireLogin(t)
}

// Attack: exhaust the keyholder's memory with huge length prefixes (x/crypto
// reads up to 16 MiB per request), or wedge it with broken frames.
//
// The whole frame is sent, so the connection can only close because of its
// size: a bare length prefix would also be closed by the stall timeout.
func TestHardeningOversizedRequestClosesOnlyThatConnection(t *testing.T) {
	w := startRawWorld(t)
	c := dialRaw(t, w.sock)
	frame := append(lengthOnly(MaxRequestBytes+1), msgRequestIdentities)
	frame = append(frame, make([]byte, MaxRequestBytes)...)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// The agent closes the connection after the length prefix, so
		// this write may fail part way; that is the point.
		_, _ = c.Write(frame)
	}()
	assert.True(t, c.closedByPeer(), "closed for its size, not answered")
	<-wrote
	w.requireLogin(t)
}

// Attack: probe for extensions (restrict-destination, query, add-smartcard)
// that would widen what the agent does.
func TestHardeningUnknownExtensionsUnsupported(t *testing.T) {
	f := newPolicyFixture(t)
	for _, ext := range []string{"query", "restrict-destination-v00@openssh.com", "session-bind@openssh.com\x00", "SESSION-BIND@OPENSSH.COM"} {
		_, err := f.a.Extension(ext, nil)
		assert.ErrorIs(t, err, agent.ErrExtensionUnsupported, strconv.Quote(ext))
	}
}

// Attack: read the key, signatures or session ids back out of the audit log
// (logs are shipped and kept far longer than the pod).
func TestHardeningNoKeyMaterialInAuditLog(t *testing.T) {
	w := startDevvmWorld(t)
	out, err := sshLogin{agentSock: w.agent.sock, knownHosts: w.knownHosts, port: w.devvm.Port, user: testUser, command: "true"}.run(t)
	require.NoError(t, err, out)
	rw := &rawWorld{agentHarness: w.agent, hostKey: w.hostKey, devvmKey: w.devvmKey}
	sid := sessionID(t, 32)
	c := dialRaw(t, rw.sock)
	_, err = c.roundTrip(extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)))
	require.NoError(t, err)
	data := userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)
	reply, err := c.roundTrip(signReq(w.devvmKey.PublicKey(), data))
	require.NoError(t, err)
	var resp signResponseMsg
	require.NoError(t, ssh.Unmarshal(reply, &resp))

	logs := w.agent.logs.String()
	require.NotEmpty(t, w.agent.logs.Where(t, "event", "sign"))
	pub := w.devvmKey.PublicKey().Marshal()
	for name, secret := range map[string][]byte{
		"signature":  resp.SigBlob,
		"session-id": sid,
		"public-key": pub, // the fingerprint is enough; not even the public blob
	} {
		for _, enc := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawStdEncoding.EncodeToString(secret), hex.EncodeToString(secret)} {
			assert.NotContains(t, logs, enc, name)
		}
	}
	assert.NotContains(t, logs, "PRIVATE KEY")
}

// Attack: a refusal message or stray output written to the process's
// standard log (x/crypto's ServeAgent does this) ends up in an unstructured,
// unaudited stream; a subprocess would be a way out of the keyholder.
func TestHardeningPackageImportsNoLogNoExec(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		parsed, err := parser.ParseFile(fset, f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			switch path {
			case "log", "os/exec", "net/http", "unsafe":
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}

// Attack: hold connection slots forever by starting requests and never
// finishing them (slowloris).
func TestHardeningStalledRequestLosesItsConnection(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	a := startAgent(t, Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser, RequestTimeout: 50 * time.Millisecond})
	idle := dialRaw(t, a.sock)
	stalled := dialRaw(t, a.sock)
	_, err := stalled.Write(append(lengthOnly(100), msgSignRequest))
	require.NoError(t, err)
	// Cut off 50 ms in: a few seconds are plenty, and a missing timeout
	// fails here in seconds rather than at sshTimeout.
	require.NoError(t, stalled.SetDeadline(time.Now().Add(3*time.Second)))
	assert.True(t, stalled.closedByPeer(), "a request stalled mid-frame is cut off")
	// An idle connection between requests is not: it still answers.
	reply, err := idle.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)
	assert.Equal(t, byte(msgIdentitiesAnswer), reply[0])
}

// Attack: pipeline requests and never read the replies, so the agent's
// goroutine for the connection blocks in a write for as long as the
// connection stays open.
func TestHardeningUnreadRepliesLoseTheConnection(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	a := startAgent(t, Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser, RequestTimeout: 50 * time.Millisecond})
	c := dialRaw(t, a.sock)
	// Far more replies than the socket buffers hold. One write per request,
	// so no request is ever split across the point where the writer blocks.
	req := append(lengthOnly(1), msgRequestIdentities)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for range 20000 {
			if _, err := c.Write(req); err != nil {
				return // the agent closed the connection
			}
		}
	}()
	// Nothing is read from c until the agent has given up on it.
	lines := a.logs.WaitFor(t, "event", "disconnect", 10*time.Second)
	assert.Contains(t, lines[0]["reason"], "write reply")
	<-wrote
	require.NoError(t, c.Close())
	a2 := dialRaw(t, a.sock)
	reply, err := a2.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)
	assert.Equal(t, byte(msgIdentitiesAnswer), reply[0], "the agent still serves others")
}

// Attack: log in to a devvm (or an impostor) presenting a host key the
// operator has marked @revoked in known_hosts, say after it leaked. The
// revoked key is never pinned, so a bind to it fails and nothing is
// signed on that connection; a key the file still pins works.
func TestHardeningRevokedDevvmHostKeyGetsNoSignature(t *testing.T) {
	revoked, current, devvmKey := newSigner(t), newSigner(t), newSigner(t)
	file := writeKnownHosts(t,
		knownhosts.Line([]string{"10.0.10.10"}, revoked.PublicKey()),
		knownhosts.Line([]string{"10.0.10.10"}, current.PublicKey()),
		"@revoked 10.0.10.10 "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked.PublicKey()))),
	)
	pins, err := LoadHostKeys(file, "10.0.10.10:22")
	require.NoError(t, err)
	s, err := New(Config{Key: devvmKey, DevvmHostKeys: pins, User: testUser})
	require.NoError(t, err)

	for _, c := range []struct {
		name    string
		hostKey ssh.Signer
		bindErr bool
		outcome Outcome
	}{
		{name: "revoked", hostKey: revoked, bindErr: true, outcome: OutcomeWrongHost},
		{name: "still-pinned", hostKey: current, outcome: OutcomeSigned},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := s.newConnAgent(peerCred{})
			sid := sessionID(t, 32)
			_, err := a.Extension(extSessionBind, bindBody(t, c.hostKey, sid, false))
			if c.bindErr {
				require.ErrorIs(t, err, ErrRefused)
			} else {
				require.NoError(t, err)
			}
			data := userauthData(sid, testUser, devvmKey.PublicKey(), c.hostKey.PublicKey())
			sig, err := a.SignWithFlags(devvmKey.PublicKey(), data, 0)
			_, outcome, _ := a.decide(devvmKey.PublicKey(), data, 0)
			assert.Equal(t, c.outcome, outcome)
			if c.outcome != OutcomeSigned {
				assert.ErrorIs(t, err, ErrRefused)
				assert.Nil(t, sig)
				return
			}
			require.NoError(t, err)
			assert.NoError(t, devvmKey.PublicKey().Verify(data, sig))
		})
	}
}
