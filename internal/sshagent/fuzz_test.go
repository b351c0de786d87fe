package sshagent

import (
	"bytes"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz seed files from the table cases")

// fixedSigner is an Ed25519 signer from a fixed seed, so fuzz corpora stay
// meaningful across runs.
func fixedSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	require.NoError(t, err)
	return s
}

// fixedFixture is a bound policy fixture with fixed keys and session id.
func fixedFixture(t testing.TB) *policyFixture {
	t.Helper()
	f := &policyFixture{hostKey: fixedSigner(t, 1), devvmKey: fixedSigner(t, 2), otherKey: fixedSigner(t, 3), boundSID: bytes.Repeat([]byte{7}, 32)}
	s, err := New(Config{Key: f.devvmKey, DevvmHostKeys: []ssh.PublicKey{f.hostKey.PublicKey()}, User: testUser, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	f.a = s.newConnAgent(peerCred{uid: -1, pid: -1})
	_, err = f.a.Extension(extSessionBind, bindBody(t, f.hostKey, f.boundSID, false))
	require.NoError(t, err)
	return f
}

// bindSeeds are session-bind bodies: valid, forwarding, and broken ones.
func bindSeeds(t testing.TB) [][]byte {
	f := fixedFixture(t)
	valid := bindBody(t, f.hostKey, f.boundSID, false)
	return [][]byte{
		valid,
		bindBody(t, f.hostKey, f.boundSID, true),
		bindBody(t, f.otherKey, f.boundSID, false),
		bindBody(t, f.hostKey, bytes.Repeat([]byte{1}, MaxSessionIDBytes+1), false),
		append(bytes.Clone(valid), 0),
		valid[:len(valid)-1],
		valid[:40],
		[]byte("garbage"),
		{},
	}
}

// userauthSeeds are the sign policy table's data.
func userauthSeeds(t testing.TB) [][]byte {
	f := fixedFixture(t)
	var out [][]byte
	for _, tc := range userauthCases {
		out = append(out, tc.data(f))
	}
	return out
}

// requestSeeds are whole agent requests (without the length prefix).
func requestSeeds(t testing.TB) [][]byte {
	f := fixedFixture(t)
	out := [][]byte{{msgRequestIdentities}, {msgRequestIdentities, 0}, {1}, {9}, {200}, {msgLock, 0, 0, 0, 1, 'x'}, {msgSignRequest, 1, 2}}
	for _, d := range userauthSeeds(t) {
		out = append(out, signReq(f.devvmKey.PublicKey(), d))
	}
	for _, b := range bindSeeds(t) {
		out = append(out, extensionReq(extSessionBind, b))
	}
	return append(out, extensionReq("query", nil))
}

func FuzzParseBind(f *testing.F) {
	for _, s := range bindSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := parseBind(body)
		if err != nil {
			assert.ErrorIs(t, err, errMalformed)
			return
		}
		assert.NotEmpty(t, b.sessionID)
		assert.LessOrEqual(t, len(b.sessionID), MaxSessionIDBytes)
		assert.NotNil(t, b.hostKey)
		assert.NotNil(t, b.signature)
	})
}

func FuzzParseUserauth(f *testing.F) {
	for _, s := range userauthSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := parseUserauth(data)
		if err != nil {
			assert.ErrorIs(t, err, errMalformed)
			return
		}
		// What parsed must be all there was: marshalling it back gives as
		// many bytes as the input (only the bool's non-zero value may
		// differ: ssh.Unmarshal reads any non-zero byte as true).
		m := userauthMsg{SessionID: u.sessionID, Type: msgUserauthRequest, User: u.user, Service: serviceConnect,
			Method: u.method, HasSig: true, Algorithm: u.algorithm, PublicKey: u.publicKey}
		if u.hostKey != nil {
			m.Rest = ssh.Marshal(hostKeyTail{HostKey: u.hostKey})
		}
		assert.Len(t, ssh.Marshal(m), len(data))
	})
}

func FuzzAgentRequest(f *testing.F) {
	for _, s := range requestSeeds(f) {
		f.Add(s)
	}
	fx := fixedFixture(f)
	bind := bindBody(f, fx.hostKey, fx.boundSID, false)
	f.Fuzz(func(t *testing.T, req []byte) {
		if len(req) == 0 {
			return // the frame reader refuses empty requests before handle
		}
		// A fresh connection per input, bound as ssh binds it, so one
		// input's bind cannot poison the next.
		a := fx.a.s.newConnAgent(peerCred{uid: -1, pid: -1})
		_, err := a.Extension(extSessionBind, bind)
		require.NoError(t, err)
		reply := a.handle(req)
		require.NotEmpty(t, reply)
		if reply[0] != msgSignResponse {
			return
		}
		// A signature was given out: it must be for a login to the bound
		// session as the devvm user with the devvm key.
		var m signRequestMsg
		require.NoError(t, ssh.Unmarshal(req, &m))
		u, err := parseUserauth(m.Data)
		require.NoError(t, err)
		assert.Equal(t, fx.boundSID, u.sessionID)
		assert.Equal(t, testUser, u.user)
		assert.Equal(t, fx.devvmKey.PublicKey().Marshal(), u.publicKey)
	})
}

// TestFuzzCorpus keeps testdata/fuzz in step with the table cases; run with
// -update-corpus to rewrite it.
func TestFuzzCorpus(t *testing.T) {
	corpora := map[string][][]byte{
		"FuzzParseBind":     bindSeeds(t),
		"FuzzParseUserauth": userauthSeeds(t),
		"FuzzAgentRequest":  requestSeeds(t),
	}
	for name, seeds := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		for i, s := range seeds {
			p := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if *updateCorpus {
				require.NoError(t, os.MkdirAll(dir, 0o755))
				require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
				continue
			}
			got, err := os.ReadFile(p)
			require.NoError(t, err, "run go test -run TestFuzzCorpus -update-corpus")
			assert.Equal(t, content, string(got), "%s is stale: run go test -run TestFuzzCorpus -update-corpus", p)
		}
	}
}
