package keyholder_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/verbs"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newPresenceEnv is a keyholder with presence required, alice enrolled and
// a settable clock, in front of the simulated Proxmox host.
func newPresenceEnv(t testing.TB) (*simEnv, *passkey.Authenticator, *testClock) {
	t.Helper()
	alice := passkey.New(passkeyRPID, passkeyOrigin)
	clock := &testClock{t: time.Now()}
	e := newSimEnv(t, options{mutate: func(c *keyholder.Config) {
		c.Presence = presence.ModeRequired
		c.RPID, c.Origins = passkeyRPID, []string{passkeyOrigin}
		c.OperatorsPath = writeOperators(t, shortDir(t), alice.Line("alice"))
		c.Now = clock.Now
	}})
	return e, alice, clock
}

// An expired challenge (120 s) is refused before any SSH connection.
func TestPresenceExpiredChallenge(t *testing.T) {
	e, alice, clock := newPresenceEnv(t)
	ctx := context.Background()
	ch, err := e.client.Challenge(ctx, ipc.ChallengeRequest{Verb: "stop"})
	require.NoError(t, err)
	assert.WithinDuration(t, clock.Now().Add(presence.ChallengeTTL), ch.ExpiresAt, time.Second)
	clock.Advance(presence.ChallengeTTL)
	p := alice.Get(ch)
	_, err = e.client.RunRequest(ctx, "stop", ipc.RunRequest{Presence: &p})
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, http.StatusForbidden, se.Status)
	assert.Equal(t, "challenge_expired", se.Reason)
	assert.Zero(t, e.sim.Connections(), "no SSH connection")
	assert.Equal(t, "running", e.vm.State())
}

// TestPresenceRefusals: through Run itself (not only the handler), a
// mutating verb without valid presence never reaches the Proxmox host.
func TestPresenceRefusals(t *testing.T) {
	e, alice, _ := newPresenceEnv(t)
	_, err := e.kh.Run("reset", keyholder.Caller{Actor: "operator:alice"})
	assert.Equal(t, presence.ReasonMissing, presence.ReasonOf(err))
	ch, _, err := e.kh.Challenge(ipc.ChallengeRequest{Verb: "reset"})
	require.NoError(t, err)
	p := alice.Get(ch, passkey.Tweak{BadSignature: true})
	_, err = e.kh.Run("reset", keyholder.Caller{Presence: &p})
	assert.Equal(t, presence.ReasonSignature, presence.ReasonOf(err))
	assert.Zero(t, e.sim.Connections())

	ch, _, err = e.kh.Challenge(ipc.ChallengeRequest{Verb: "reset"})
	require.NoError(t, err)
	p = alice.Get(ch)
	res, err := e.kh.Run("reset", keyholder.Caller{Presence: &p})
	require.NoError(t, err)
	assert.Equal(t, "alice", res.Operator)
	assert.Equal(t, int64(1), e.sim.Connections())
}

// An enrollment where the operators file cannot be written (a ConfigMap;
// here a folder that does not exist, which even root cannot write into)
// still answers the line, to be added by hand.
func TestEnrollmentReadOnlyOperatorsFile(t *testing.T) {
	ops := filepath.Join(shortDir(t), "no-such-folder", "operators")
	e := newSimEnv(t, options{mutate: func(c *keyholder.Config) {
		c.Presence = presence.ModeRequired
		c.RPID, c.Origins = passkeyRPID, []string{passkeyOrigin}
		c.OperatorsPath = ops
		c.Enroll = true
	}})
	code := e.log.WaitFor(t, "@message", "enrollment open: type this code on the Enroll page", time.Second)[0]["code"].(string)
	bob := passkey.New(passkeyRPID, passkeyOrigin)
	ctx := context.Background()
	en, err := e.client.BeginEnrollment(ctx, "bob")
	require.NoError(t, err)
	line, err := e.client.FinishEnrollment(ctx, en.EnrollmentID, bob.Create(en, code))
	require.NoError(t, err)
	assert.Equal(t, bob.Line("bob"), line.Line)
	assert.False(t, line.Appended)
}

// A guest-exec challenge is bound to its exact argv: an assertion for one
// command does not run another.
func TestPresenceWrongArgv(t *testing.T) {
	e, alice, _ := newPresenceEnv(t)
	ch, _, err := e.kh.Challenge(ipc.ChallengeRequest{Verb: "guest-exec", Args: []string{"systemctl", "status"}})
	require.NoError(t, err)
	p := alice.Get(ch)
	_, err = e.kh.RunArgs("guest-exec", []string{"rm", "-rf", "/"}, keyholder.Caller{Presence: &p})
	assert.Equal(t, presence.ReasonWrongBinding, presence.ReasonOf(err))
	assert.Zero(t, e.sim.Connections())

	_, _, err = e.kh.Challenge(ipc.ChallengeRequest{Verb: "guest-exec"})
	assert.ErrorIs(t, err, keyholder.ErrChallengeRequest, "guest-exec needs its argv")
}

// TestPresenceLargestArgv: the largest argv guest-exec takes (8 × 512
// bytes, 4 KiB in all, of characters json.Marshal would escape sixfold)
// gets a challenge and runs with the operator's assertion through the
// socket, sent by the web's own client: the challenge's body cap is
// guest-exec's own and the client sends the argv unescaped, so no valid
// argv is one that can never be approved.
func TestPresenceLargestArgv(t *testing.T) {
	e, alice, _ := newPresenceEnv(t)
	arg := strings.Repeat("<&>", verbs.MaxArgLen/3) + strings.Repeat("x", verbs.MaxArgLen%3)
	argv := make([]string, verbs.MaxArgsLen/verbs.MaxArgLen)
	for i := range argv {
		argv[i] = arg
	}
	require.NoError(t, verbs.ValidateArgs(argv))
	ctx := context.Background()
	ch, err := e.client.Challenge(ctx, ipc.ChallengeRequest{Verb: "guest-exec", Args: argv, Actor: "operator:test"})
	require.NoError(t, err)
	p := alice.Get(ch)
	res, err := e.client.RunRequest(ctx, "guest-exec", ipc.RunRequest{Actor: "operator:test", Args: argv, Presence: &p})
	require.NoError(t, err)
	assert.Zero(t, res.ExitCode)
	assert.Equal(t, [][]string{argv}, e.vm.GuestExecs())
}
