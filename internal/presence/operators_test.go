package presence_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
)

func TestParseOperators(t *testing.T) {
	a, b := passkey.New(rpID, origin), passkey.New(rpID, origin)
	good := "# operators\n\n" + a.Line("alice") + "\n  " + b.Line("bob") + "  \n"
	creds, err := presence.ParseOperators(strings.NewReader(good))
	require.NoError(t, err)
	require.Len(t, creds, 2)
	assert.Equal(t, "alice", creds[0].Name)
	assert.Equal(t, b.ID, creds[1].ID)
	assert.Equal(t, b.Line("bob"), creds[1].Line(), "a line reads back as written")

	bad := []struct {
		name, file, want string
	}{
		{"two-fields", "alice " + a.CredentialID(), "line 1"},
		{"four-fields", a.Line("alice") + " x", "line 1"},
		{"bad-name", strings.Replace(a.Line("alice"), "alice", "al;ce", 1), "name"},
		{"padded-id", "alice " + a.CredentialID() + "== " + strings.Fields(a.Line("x"))[2], "credential id"},
		{"bad-key", "alice " + a.CredentialID() + " AAAA", "COSE"},
		{"duplicate", a.Line("alice") + "\n" + a.Line("alice2"), "line 2"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := presence.ParseOperators(strings.NewReader(tc.file))
			require.ErrorIs(t, err, presence.ErrOperators)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func coseOf(t *testing.T, m map[int]any) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	require.NoError(t, err)
	b, err := em.Marshal(m)
	require.NoError(t, err)
	return b
}

// ES256 is required; EdDSA and RS256 are accepted; everything else and
// every malformed key is refused.
func TestParsePublicKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	x, y := ec.X.FillBytes(make([]byte, 32)), ec.Y.FillBytes(make([]byte, 32))
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	offCurve := append([]byte(nil), y...)
	offCurve[31] ^= 1

	good := map[string]map[int]any{
		"es256": {1: 2, 3: -7, -1: 1, -2: x, -3: y},
		"eddsa": {1: 1, 3: -8, -1: 6, -2: []byte(edPub)},
		"rs256": {1: 3, 3: -257, -1: rk.N.Bytes(), -2: big.NewInt(int64(rk.E)).Bytes()},
	}
	for name, m := range good {
		t.Run(name, func(t *testing.T) {
			_, err := presence.ParsePublicKey(coseOf(t, m))
			require.NoError(t, err)
		})
	}
	bad := map[string]map[int]any{
		"es256-off-curve": {1: 2, 3: -7, -1: 1, -2: x, -3: offCurve},
		"es256-p384":      {1: 2, 3: -7, -1: 2, -2: x, -3: y},
		"es256-short-x":   {1: 2, 3: -7, -1: 1, -2: x[1:], -3: y},
		// The same 64 bytes split 33/31: the same point, but not the
		// COSE encoding, which is 32 bytes each.
		"es256-split-33-31": {1: 2, 3: -7, -1: 1, -2: append(append([]byte(nil), x...), y[0]), -3: y[1:]},
		"es384":             {1: 2, 3: -35, -1: 1, -2: x, -3: y},
		"eddsa-short":       {1: 1, 3: -8, -1: 6, -2: []byte(edPub)[1:]},
		"eddsa-x448":        {1: 1, 3: -8, -1: 7, -2: []byte(edPub)},
		"rs256-1024":        {1: 3, 3: -257, -1: small.N.Bytes(), -2: big.NewInt(int64(small.E)).Bytes()},
		"rs256-even-e":      {1: 3, 3: -257, -1: rk.N.Bytes(), -2: []byte{2}},
		"kty-alg-mismatch":  {1: 1, 3: -7, -1: 1, -2: x, -3: y},
		"empty":             {},
	}
	for name, m := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := presence.ParsePublicKey(coseOf(t, m))
			require.ErrorIs(t, err, presence.ErrKey)
		})
	}
	es := coseOf(t, good["es256"])
	for name, b := range map[string][]byte{
		"trailing":       append(append([]byte(nil), es...), 0),
		"not-cbor":       []byte("hello"),
		"nothing":        nil,
		"indefinite-map": {0xbf, 0x01, 0x02, 0xff},
		"duplicate-key":  {0xa2, 0x01, 0x02, 0x01, 0x02},
		"tagged":         append([]byte{0xd8, 0x18}, es...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := presence.ParsePublicKey(b)
			require.ErrorIs(t, err, presence.ErrKey)
		})
	}
}

// EdDSA and RS256 passkeys verify end to end (ES256 is every other test).
func TestAssertionOtherAlgorithms(t *testing.T) {
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	cases := map[string]struct {
		cose []byte
		sign func(msg []byte) []byte
	}{
		"eddsa": {coseOf(t, map[int]any{1: 1, 3: -8, -1: 6, -2: []byte(edPub)}), func(m []byte) []byte { return ed25519.Sign(edKey, m) }},
		"rs256": {coseOf(t, map[int]any{1: 3, 3: -257, -1: rk.N.Bytes(), -2: big.NewInt(int64(rk.E)).Bytes()}), func(m []byte) []byte {
			h := sha256.Sum256(m)
			s, err := rsa.SignPKCS1v15(rand.Reader, rk, 5 /* crypto.SHA256 */, h[:])
			require.NoError(t, err)
			return s
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			// Borrow the software passkey's honest client data and
			// authenticator data, then sign them with this key.
			id := []byte("cred-" + name)
			cred, err := presence.ParseLine("carol " + presence.Encode(id) + " " + presence.Encode(tc.cose))
			require.NoError(t, err)
			v, err := presence.New(presence.Config{RPID: rpID, Origins: []string{origin}, Operators: []presence.Credential{cred}, Now: f.clock.Now})
			require.NoError(t, err)
			f.v = v
			ch := f.issue(t, verb("start"))
			a := assertion(t, f.alice.Get(ch))
			a.CredentialID = id
			h := sha256.Sum256(a.ClientDataJSON)
			a.Signature = tc.sign(append(append([]byte(nil), a.AuthenticatorData...), h[:]...))
			got, err := v.Verify(verb("start"), a)
			require.NoError(t, err)
			assert.Equal(t, "carol", got.Name)

			ch = f.issue(t, verb("start"))
			a = assertion(t, f.alice.Get(ch))
			a.CredentialID = id
			a.Signature = tc.sign([]byte("something else"))
			_, err = v.Verify(verb("start"), a)
			requireReason(t, err, presence.ReasonSignature)
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name    string
		rpID    string
		origins []string
	}{
		{"no-rp-id", "", []string{origin}},
		{"ip-rp-id", "10.0.0.1", []string{"https://10.0.0.1"}},
		{"ipv6-rp-id", "[::1]", []string{"https://[::1]"}},
		{"upper-case", "Example.com", []string{"https://Example.com"}},
		{"no-origins", "example.com", nil},
		{"other-host", "example.com", []string{"https://example.org"}},
		{"suffix-not-subdomain", "example.com", []string{"https://badexample.com"}},
		{"http-not-localhost", "example.com", []string{"http://example.com"}},
		{"path", "example.com", []string{"https://example.com/app"}},
		{"trailing-slash", "example.com", []string{"https://example.com/"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := presence.New(presence.Config{RPID: tc.rpID, Origins: tc.origins})
			require.ErrorIs(t, err, presence.ErrConfig)
		})
	}
	_, err := presence.New(presence.Config{RPID: "example.com", Origins: []string{"https://example.com", "https://bg.example.com:8443"}})
	require.NoError(t, err)
}
