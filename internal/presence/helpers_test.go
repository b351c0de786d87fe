package presence_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
)

const (
	rpID   = "localhost"
	origin = "http://localhost:8080"
	vmid   = 102
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a Verifier with alice's passkey enrolled.
type fixture struct {
	v     *presence.Verifier
	alice *passkey.Authenticator
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	alice := passkey.New(rpID, origin)
	cred, err := presence.ParseLine(alice.Line("alice"))
	require.NoError(t, err)
	c := &clock{t: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
	v, err := presence.New(presence.Config{RPID: rpID, Origins: []string{origin}, Operators: []presence.Credential{cred}, Now: c.Now})
	require.NoError(t, err)
	return &fixture{v: v, alice: alice, clock: c}
}

func verb(name string, args ...string) presence.Binding {
	return presence.Binding{Purpose: presence.PurposeVerb, Verb: name, Args: args, VMID: vmid}
}

// issue issues a challenge for b, in the wire form the authenticator reads.
func (f *fixture) issue(t *testing.T, b presence.Binding) ipc.Challenge {
	t.Helper()
	c, err := f.v.Issue(b)
	require.NoError(t, err)
	return ipc.Challenge{ChallengeID: c.ID, Challenge: presence.Encode(c.Challenge), RPID: rpID, ExpiresAt: c.ExpiresAt}
}

// assertion decodes a wire assertion.
func assertion(t *testing.T, p ipc.Presence) presence.Assertion {
	t.Helper()
	dec := func(s string) []byte {
		b, err := presence.Decode(s)
		require.NoError(t, err)
		return b
	}
	return presence.Assertion{
		ChallengeID:       p.ChallengeID,
		CredentialID:      dec(p.CredentialID),
		ClientDataJSON:    dec(p.ClientDataJSON),
		AuthenticatorData: dec(p.AuthenticatorData),
		Signature:         dec(p.Signature),
	}
}

// requireReason checks err is a refusal for r.
func requireReason(t *testing.T, err error, r presence.Reason) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, r, presence.ReasonOf(err), "error: %v", err)
	require.Contains(t, err.Error(), "operator presence: ")
}
