package sshagent

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// policyFixture is one agent value bound to boundSID for hostKey.
type policyFixture struct {
	a        *connAgent
	hostKey  ssh.Signer
	devvmKey ssh.Signer
	otherKey ssh.Signer
	boundSID []byte
}

func newPolicyFixture(t testing.TB) *policyFixture {
	t.Helper()
	f := &policyFixture{hostKey: newSigner(t), devvmKey: newSigner(t), otherKey: newSigner(t), boundSID: sessionID(t, 32)}
	s, err := New(Config{Key: f.devvmKey, DevvmHostKeys: []ssh.PublicKey{f.hostKey.PublicKey()}, User: testUser, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	f.a = s.newConnAgent(peerCred{uid: -1, pid: -1})
	_, err = f.a.Extension(extSessionBind, bindBody(t, f.hostKey, f.boundSID, false))
	require.NoError(t, err)
	return f
}

// userauthCase is one sign request against a bound connection.
type userauthCase struct {
	name string
	desc string
	// key is the key the sign request names (nil: the devvm key).
	key     func(f *policyFixture) ssh.PublicKey
	data    func(f *policyFixture) []byte
	flags   agent.SignatureFlags
	outcome Outcome
}

// mutate builds userauth data from a valid publickey request changed by fn.
func mutate(fn func(f *policyFixture, m *userauthMsg)) func(f *policyFixture) []byte {
	return func(f *policyFixture) []byte {
		var m userauthMsg
		if err := ssh.Unmarshal(userauthData(f.boundSID, testUser, f.devvmKey.PublicKey(), nil), &m); err != nil {
			panic(err)
		}
		fn(f, &m)
		return ssh.Marshal(m)
	}
}

// userauthCases are the sign policy's table; they also seed the fuzz
// targets.
var userauthCases = []userauthCase{
	{name: "publickey", data: mutate(func(*policyFixture, *userauthMsg) {}), outcome: OutcomeSigned},
	{name: "hostbound", data: func(f *policyFixture) []byte {
		return userauthData(f.boundSID, testUser, f.devvmKey.PublicKey(), f.hostKey.PublicKey())
	}, outcome: OutcomeSigned},
	{name: "hostbound-other-host", desc: "the request names a host key other than the bound one", data: func(f *policyFixture) []byte {
		return userauthData(f.boundSID, testUser, f.devvmKey.PublicKey(), f.otherKey.PublicKey())
	}, outcome: OutcomeWrongHost},
	{name: "other-user", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.User = "root" }), outcome: OutcomeWrongUser},
	{name: "user-prefix", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.User = testUser + "\x00" }), outcome: OutcomeWrongUser},
	{name: "other-session", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.SessionID = append([]byte{1}, m.SessionID[1:]...) }), outcome: OutcomeUnbound},
	{name: "empty-session", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.SessionID = nil }), outcome: OutcomeMalformed},
	{name: "long-session", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.SessionID = make([]byte, MaxSessionIDBytes+1) }), outcome: OutcomeMalformed},
	{name: "not-userauth-type", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Type = 51 }), outcome: OutcomeMalformed},
	{name: "other-service", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Service = "ssh-userauth" }), outcome: OutcomeMalformed},
	{name: "no-signature-flag", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.HasSig = false }), outcome: OutcomeMalformed},
	{name: "hostbased-method", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Method = "hostbased" }), outcome: OutcomeMalformed},
	{name: "trailing-bytes", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Rest = []byte{0} }), outcome: OutcomeMalformed},
	{name: "publickey-with-host-key", desc: "the hostbound tail on the plain method", data: mutate(func(f *policyFixture, m *userauthMsg) {
		m.Rest = ssh.Marshal(hostKeyTail{HostKey: f.hostKey.PublicKey().Marshal()})
	}), outcome: OutcomeMalformed},
	{name: "hostbound-two-host-keys", data: mutate(func(f *policyFixture, m *userauthMsg) {
		m.Method = methodHostBound
		tail := ssh.Marshal(hostKeyTail{HostKey: f.hostKey.PublicKey().Marshal()})
		m.Rest = append(tail, tail...)
	}), outcome: OutcomeMalformed},
	{name: "hostbound-no-host-key", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Method = methodHostBound }), outcome: OutcomeMalformed},
	{name: "other-key-in-data", data: mutate(func(f *policyFixture, m *userauthMsg) { m.PublicKey = f.otherKey.PublicKey().Marshal() }), outcome: OutcomeMalformed},
	{name: "other-key-requested", key: func(f *policyFixture) ssh.PublicKey { return f.otherKey.PublicKey() },
		data: mutate(func(f *policyFixture, m *userauthMsg) { m.PublicKey = f.otherKey.PublicKey().Marshal() }), outcome: OutcomeMalformed},
	{name: "other-algorithm", data: mutate(func(_ *policyFixture, m *userauthMsg) { m.Algorithm = ssh.KeyAlgoRSASHA256 }), outcome: OutcomeMalformed},
	{name: "rsa-flags-on-ed25519", data: mutate(func(*policyFixture, *userauthMsg) {}), flags: agent.SignatureFlagRsaSha256, outcome: OutcomeSigned},
	{name: "git-commit", desc: "arbitrary data: the agent is not a signing oracle", data: func(*policyFixture) []byte {
		return []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor x\n")
	}, outcome: OutcomeMalformed},
	{name: "sshsig", desc: "an SSHSIG blob (ssh-keygen -Y sign)", data: func(*policyFixture) []byte {
		return append([]byte("SSHSIG"), ssh.Marshal(struct{ Namespace, Reserved, Hash string }{"file", "", "sha512"})...)
	}, outcome: OutcomeMalformed},
	{name: "empty", data: func(*policyFixture) []byte { return nil }, outcome: OutcomeMalformed},
	{name: "hostbound-empty-host-key", desc: "the hostbound form whose host key is an empty string", data: mutate(func(_ *policyFixture, m *userauthMsg) {
		m.Method = methodHostBound
		m.Rest = ssh.Marshal(hostKeyTail{})
	}), outcome: OutcomeMalformed},
	{name: "other-key-requested-only", desc: "the request asks for another key while its data names the devvm key", key: func(f *policyFixture) ssh.PublicKey { return f.otherKey.PublicKey() },
		data: mutate(func(*policyFixture, *userauthMsg) {}), outcome: OutcomeMalformed},
}

func TestSignPolicy(t *testing.T) {
	for _, tc := range userauthCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPolicyFixture(t)
			key := f.devvmKey.PublicKey()
			if tc.key != nil {
				key = tc.key(f)
			}
			data := tc.data(f)
			ua, outcome, reason := f.a.decide(key, data, tc.flags)
			assert.Equal(t, tc.outcome, outcome, "reason: %s", reason)
			sig, err := f.a.SignWithFlags(key, data, tc.flags)
			if tc.outcome != OutcomeSigned {
				assert.ErrorIs(t, err, ErrRefused)
				assert.Nil(t, sig)
				assert.NotEmpty(t, reason)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, ua)
			assert.NoError(t, f.devvmKey.PublicKey().Verify(data, sig))
		})
	}
}

func TestBindStates(t *testing.T) {
	tests := []struct {
		name string
		// binds returns the bind bodies sent in order, and the session id
		// a login is then attempted for.
		binds   func(t *testing.T, f *policyFixture) ([][]byte, []byte)
		bindErr []bool
		outcome Outcome
	}{
		{
			name: "unbound",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				return nil, sessionID(t, 32)
			},
			outcome: OutcomeUnbound,
		},
		{
			name: "bound",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.hostKey, sid, false)}, sid
			},
			bindErr: []bool{false},
			outcome: OutcomeSigned,
		},
		{
			name: "forwarding",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.hostKey, sid, true)}, sid
			},
			bindErr: []bool{true},
			outcome: OutcomeForwarding,
		},
		{
			name: "forwarding-then-login",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.hostKey, sessionID(t, 32), true), bindBody(t, f.hostKey, sid, false)}, sid
			},
			bindErr: []bool{true, true},
			outcome: OutcomeForwarding,
		},
		{
			name: "wrong-host",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.otherKey, sid, false)}, sid
			},
			bindErr: []bool{true},
			outcome: OutcomeWrongHost,
		},
		{
			name: "wrong-host-then-right-host",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.otherKey, sid, false), bindBody(t, f.hostKey, sid, false)}, sid
			},
			bindErr: []bool{true, true},
			outcome: OutcomeWrongHost,
		},
		{
			name: "bound-then-other-host",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, 32)
				return [][]byte{bindBody(t, f.hostKey, sid, false), bindBody(t, f.otherKey, sessionID(t, 32), false)}, sid
			},
			bindErr: []bool{false, true},
			outcome: OutcomeMalformed,
		},
		{
			name: "session-id-128-bytes",
			binds: func(t *testing.T, f *policyFixture) ([][]byte, []byte) {
				sid := sessionID(t, MaxSessionIDBytes)
				return [][]byte{bindBody(t, f.hostKey, sid, false)}, sid
			},
			bindErr: []bool{false},
			outcome: OutcomeSigned,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPolicyFixture(t)
			f.a = f.a.s.newConnAgent(peerCred{uid: -1, pid: -1}) // a fresh, unbound connection
			binds, sid := tc.binds(t, f)
			for i, b := range binds {
				_, err := f.a.Extension(extSessionBind, b)
				assert.Equal(t, tc.bindErr[i], err != nil, "bind %d: %v", i, err)
			}
			data := userauthData(sid, testUser, f.devvmKey.PublicKey(), nil)
			_, outcome, reason := f.a.decide(f.devvmKey.PublicKey(), data, 0)
			assert.Equal(t, tc.outcome, outcome, "reason: %s", reason)
		})
	}
}

func TestRefusedAgentMethods(t *testing.T) {
	f := newPolicyFixture(t)
	_, err := f.a.Extension("query", nil)
	assert.ErrorIs(t, err, agent.ErrExtensionUnsupported)
	keys, err := f.a.List()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, f.devvmKey.PublicKey().Marshal(), keys[0].Blob)
}

func TestAlgorithmFor(t *testing.T) {
	tests := []struct {
		name    string
		keyType string
		flags   agent.SignatureFlags
		want    string
	}{
		{"ed25519", ssh.KeyAlgoED25519, 0, ssh.KeyAlgoED25519},
		{"ed25519-rsa-flag", ssh.KeyAlgoED25519, agent.SignatureFlagRsaSha512, ssh.KeyAlgoED25519},
		{"rsa-sha1", ssh.KeyAlgoRSA, 0, ssh.KeyAlgoRSA},
		{"rsa-sha256", ssh.KeyAlgoRSA, agent.SignatureFlagRsaSha256, ssh.KeyAlgoRSASHA256},
		{"rsa-sha512", ssh.KeyAlgoRSA, agent.SignatureFlagRsaSha512, ssh.KeyAlgoRSASHA512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, algorithmFor(tc.keyType, tc.flags))
		})
	}
}

func TestNewRefusesUnsafeConfig(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaLike, err := ssh.NewPublicKey(&rk.PublicKey)
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"zero", Config{}, ErrNoKey},
		{"no-user", Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}}, ErrNoUser},
		{"no-host-keys", Config{Key: key, User: testUser}, ErrNoHostKeys},
		{"nil-host-key", Config{Key: key, User: testUser, DevvmHostKeys: []ssh.PublicKey{nil}}, ErrHostKeyType},
		{"rsa-host-key", Config{Key: key, User: testUser, DevvmHostKeys: []ssh.PublicKey{rsaLike}}, ErrHostKeyType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

// The devvm key is pinned Ed25519 in practice, but an RSA key signs with the
// SHA-2 algorithm the flags ask for, as OpenSSH's agent does.
func TestRSAKeySignsWithFlaggedAlgorithm(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	devvm, err := ssh.NewSignerFromKey(rk)
	require.NoError(t, err)
	host := newSigner(t)
	s, err := New(Config{Key: devvm, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser})
	require.NoError(t, err)
	tests := []struct {
		name  string
		flags agent.SignatureFlags
		algo  string
	}{
		{"sha256", agent.SignatureFlagRsaSha256, ssh.KeyAlgoRSASHA256},
		{"sha512", agent.SignatureFlagRsaSha512, ssh.KeyAlgoRSASHA512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := s.newConnAgent(peerCred{})
			sid := sessionID(t, 32)
			_, err := a.Extension(extSessionBind, bindBody(t, host, sid, false))
			require.NoError(t, err)
			var m userauthMsg
			require.NoError(t, ssh.Unmarshal(userauthData(sid, testUser, devvm.PublicKey(), nil), &m))
			m.Algorithm = tc.algo
			data := ssh.Marshal(m)
			sig, err := a.SignWithFlags(devvm.PublicKey(), data, tc.flags)
			require.NoError(t, err)
			assert.Equal(t, tc.algo, sig.Format)
			assert.NoError(t, devvm.PublicKey().Verify(data, sig))
			// The same request without the flag names the wrong algorithm.
			_, outcome, reason := a.decide(devvm.PublicKey(), data, 0)
			assert.Equal(t, OutcomeMalformed, outcome)
			assert.Contains(t, reason, "algorithm")
		})
	}
}
