package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/logtest"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
)

// simBinary is the real keyholder binary in front of the simulated
// Proxmox host, with alice's passkey enrolled and presence required (the
// default: BREAKGLASS_PRESENCE is not set).
type simBinary struct {
	*fixture
	vm     *pvesim.VM
	sim    *pvesim.Server
	client *ipc.Client
	log    *logtest.Buffer
}

func startSimBinary(t *testing.T, edit func(f *fixture)) *simBinary {
	t.Helper()
	f := newFixture(t)
	// The PVE key the binary uses, trusted by the simulated host.
	pvePath, pvePub, _ := sshdtest.WriteKey(t, f.dir)
	f.env[envPVEKey] = pvePath
	vm := pvesim.NewVM(102)
	hostKey := newHostSigner(t)
	sim, err := pvesim.Start(pvesim.Config{VM: vm, AuthorizedKey: pvePub, HostKey: hostKey, StopWait: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	host, port, _ := strings.Cut(sim.Addr, ":")
	f.env[envPVEHost], f.env[envPVEPort] = host, port
	lines := knownhosts.Line([]string{knownhosts.Normalize(sim.Addr)}, hostKey.PublicKey()) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, newHostSigner(t).PublicKey()) + "\n"
	require.NoError(t, os.WriteFile(f.env[envKnownHosts], []byte(lines), 0o644))
	if edit != nil {
		edit(f)
	}
	_, stderr := f.start(t)
	b := &simBinary{fixture: f, vm: vm, sim: sim, log: &logtest.Buffer{}}
	go copyLines(stderr, b.log)
	b.log.WaitFor(t, "@message", "serving", 20*time.Second)
	b.client = ipc.NewClient(f.socket())
	t.Cleanup(b.client.Close)
	return b
}

// copyLines copies the binary's log lines into buf until it exits.
func copyLines(sc *bufio.Scanner, buf *logtest.Buffer) {
	for sc.Scan() {
		_, _ = buf.Write(append(sc.Bytes(), '\n'))
	}
}

// challenge asks the binary for a challenge for verb.
func (b *simBinary) challenge(t *testing.T, verb string) ipc.Challenge {
	t.Helper()
	ch, err := b.client.Challenge(context.Background(), ipc.ChallengeRequest{Verb: verb, Actor: "operator:alice"})
	require.NoError(t, err)
	return ch
}

// run posts verb with p and returns the answer.
func (b *simBinary) run(t *testing.T, verb string, p *ipc.Presence) (ipc.Result, error) {
	t.Helper()
	return b.client.RunRequest(context.Background(), verb, ipc.RunRequest{Actor: "operator:alice", Presence: p})
}

// requireRefused checks err is a 403 with reason, that no SSH connection
// reached the Proxmox host and the VM is as it was.
func (b *simBinary) requireRefused(t *testing.T, err error, reason string, connsBefore int64) {
	t.Helper()
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se), "want a 403, got %v", err)
	assert.Equal(t, http.StatusForbidden, se.Status)
	assert.Equal(t, reason, se.Reason)
	assert.True(t, strings.HasPrefix(se.Message, "operator presence: "), se.Message)
	assert.Equal(t, connsBefore, b.sim.Connections(), "no SSH connection for a refused verb")
	assert.Equal(t, "running", b.vm.State())
	lines := b.log.WaitFor(t, "reason", reason, 5*time.Second)
	assert.Equal(t, float64(403), lines[len(lines)-1]["status"], "the refusal's audit line")
}

// TestBinaryPresenceRefusals drives the real keyholder binary on its socket
// with every way an assertion can be wrong: each is a 403 naming its check,
// before any SSH connection to the Proxmox host.
func TestBinaryPresenceRefusals(t *testing.T) {
	b := startSimBinary(t, nil)
	mallory := passkey.New("localhost", "http://localhost:8080")
	cases := []struct {
		name   string
		verb   string
		get    func(ch ipc.Challenge) *ipc.Presence
		reason string
	}{
		{"no-presence", "stop", func(ipc.Challenge) *ipc.Presence { return nil }, "presence_missing"},
		{"cross-verb", "reset", func(ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(b.challenge(t, "start"))
			return &p
		}, "challenge_mismatch"},
		{"up-missing", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{Flags: passkey.Flags(passkey.FlagUV)})
			return &p
		}, "user_not_present"},
		{"uv-missing", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{Flags: passkey.Flags(passkey.FlagUP)})
			return &p
		}, "user_not_verified"},
		{"foreign-origin", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{Origin: "https://evil.example"})
			return &p
		}, "foreign_origin"},
		{"foreign-rp-id", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{RPID: "evil.example"})
			return &p
		}, "foreign_rp_id"},
		{"type-create", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{Type: "webauthn.create"})
			return &p
		}, "wrong_type"},
		{"unknown-credential", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := mallory.Get(ch)
			return &p
		}, "unknown_credential"},
		{"bad-signature", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch, passkey.Tweak{BadSignature: true})
			return &p
		}, "bad_signature"},
		{"not-base64url", "stop", func(ch ipc.Challenge) *ipc.Presence {
			p := b.alice.Get(ch)
			p.Signature += "=="
			return &p
		}, "malformed"},
		{"never-issued", "stop", func(ch ipc.Challenge) *ipc.Presence {
			ch.ChallengeID = "AAAAAAAAAAAAAAAAAAAAAA"
			p := b.alice.Get(ch)
			return &p
		}, "unknown_challenge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.sim.Connections()
			ch := b.challenge(t, tc.verb)
			_, err := b.run(t, tc.verb, tc.get(ch))
			b.requireRefused(t, err, tc.reason, before)
		})
	}

	t.Run("valid-runs", func(t *testing.T) {
		before := b.sim.Connections()
		res, err := b.run(t, "stop", ptr(b.alice.Get(b.challenge(t, "stop"))))
		require.NoError(t, err)
		assert.Equal(t, "alice", res.Operator)
		assert.Equal(t, before+1, b.sim.Connections())
		assert.Equal(t, "stopped", b.vm.State())
		started := b.log.WaitFor(t, "@message", "mutating verb starts", 5*time.Second)
		assert.Equal(t, "alice", started[len(started)-1]["operator"], "the audit line names whose key signed")
		assert.Equal(t, "operator:alice", started[len(started)-1]["actor"], "the actor is only a label")
		res, err = b.run(t, "start", ptr(b.alice.Get(b.challenge(t, "start"))))
		require.NoError(t, err)
		assert.Equal(t, "running", b.vm.State())
	})

	t.Run("wrong-argv", func(t *testing.T) {
		ch, err := b.client.Challenge(context.Background(), ipc.ChallengeRequest{Verb: "guest-exec", Args: []string{"uptime"}})
		require.NoError(t, err)
		before := b.sim.Connections()
		p := b.alice.Get(ch)
		_, err = b.client.RunRequest(context.Background(), "guest-exec", ipc.RunRequest{Args: []string{"reboot"}, Presence: &p})
		b.requireRefused(t, err, "challenge_mismatch", before)
	})

	t.Run("replayed", func(t *testing.T) {
		p := b.alice.Get(b.challenge(t, "reset"))
		_, err := b.run(t, "reset", &p)
		require.NoError(t, err)
		before := b.sim.Connections()
		_, err = b.run(t, "reset", &p)
		b.requireRefused(t, err, "challenge_used", before)
	})

	t.Run("failed-attempt-consumes", func(t *testing.T) {
		ch := b.challenge(t, "stop")
		before := b.sim.Connections()
		_, err := b.run(t, "stop", ptr(b.alice.Get(ch, passkey.Tweak{Origin: "https://evil.example"})))
		b.requireRefused(t, err, "foreign_origin", before)
		_, err = b.run(t, "stop", ptr(b.alice.Get(ch)))
		b.requireRefused(t, err, "challenge_used", before)
	})

	t.Run("sign-count-backwards", func(t *testing.T) {
		_, err := b.run(t, "reset", ptr(b.alice.Get(b.challenge(t, "reset"), passkey.Tweak{SignCount: passkey.Count(41)})))
		require.NoError(t, err)
		before := b.sim.Connections()
		_, err = b.run(t, "stop", ptr(b.alice.Get(b.challenge(t, "stop"), passkey.Tweak{SignCount: passkey.Count(40)})))
		b.requireRefused(t, err, "sign_count", before)
	})

	t.Run("read-verbs-need-nothing", func(t *testing.T) {
		before := b.sim.Connections()
		res, err := b.run(t, "status", nil)
		require.NoError(t, err)
		assert.Empty(t, res.Operator)
		assert.Equal(t, before+1, b.sim.Connections())
	})

	t.Run("challenge-requests", func(t *testing.T) {
		for name, req := range map[string]ipc.ChallengeRequest{
			"read-verb":      {Verb: "status"},
			"unknown-verb":   {Verb: "rm"},
			"args-on-reset":  {Verb: "reset", Args: []string{"now"}},
			"login-and-verb": {Purpose: "login", Verb: "reset"},
			"purpose":        {Purpose: "sudo"},
		} {
			_, err := b.client.Challenge(context.Background(), req)
			var se *ipc.StatusError
			require.True(t, errors.As(err, &se), "%s: %v", name, err)
			assert.Equal(t, http.StatusBadRequest, se.Status, name)
		}
	})

	t.Run("verb-list", func(t *testing.T) {
		vl, err := b.client.Verbs(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "required", vl.Presence)
	})

	t.Run("metrics-per-reason", func(t *testing.T) {
		body, _, err := b.client.Metrics(context.Background())
		require.NoError(t, err)
		for _, r := range []string{"presence_missing", "challenge_mismatch", "user_not_present", "user_not_verified", "foreign_origin", "foreign_rp_id", "wrong_type", "unknown_credential", "bad_signature", "challenge_used", "sign_count", "malformed", "unknown_challenge"} {
			assert.Regexp(t, `keyholder_presence_refusals_total\{reason="`+r+`"\} [1-9]`, string(body), r)
		}
		assert.Contains(t, string(body), `keyholder_verbs_total{outcome="presence_refused",verb="stop"}`)
	})
}

// TestBinaryLogin: a login challenge signs in, and is good for nothing
// else; a verb's challenge is no login.
func TestBinaryLogin(t *testing.T) {
	b := startSimBinary(t, nil)
	ctx := context.Background()
	ch, err := b.client.Challenge(ctx, ipc.ChallengeRequest{Purpose: "login"})
	require.NoError(t, err)
	assert.Equal(t, "localhost", ch.RPID)
	assert.Equal(t, []string{b.alice.CredentialID()}, ch.CredentialIDs)
	l, err := b.client.Login(ctx, b.alice.Get(ch))
	require.NoError(t, err)
	assert.Equal(t, "alice", l.Operator)
	lines := b.log.WaitFor(t, "route", "login", 5*time.Second)
	assert.Equal(t, "alice", lines[0]["operator"])

	before := b.sim.Connections()
	ch, err = b.client.Challenge(ctx, ipc.ChallengeRequest{Purpose: "login"})
	require.NoError(t, err)
	_, err = b.run(t, "stop", ptr(b.alice.Get(ch)))
	b.requireRefused(t, err, "challenge_mismatch", before)

	_, err = b.client.Login(ctx, b.alice.Get(b.challenge(t, "stop")))
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se))
	assert.Equal(t, "challenge_mismatch", se.Reason)
}

// TestBinaryEnrollment: with BREAKGLASS_ENROLL=open and no operators file,
// the binary prints a code to its own log; the code enrolls one passkey,
// whose line is appended, and enrollment closes.
func TestBinaryEnrollment(t *testing.T) {
	b := startSimBinary(t, func(f *fixture) {
		f.env[envEnroll] = "open"
		f.env[envOperators] = filepath.Join(f.dir, "new-operators")
	})
	ctx := context.Background()
	opened := b.log.WaitFor(t, "@message", "enrollment open: type this code on the Enroll page", 5*time.Second)
	code, _ := opened[0]["code"].(string)
	require.Regexp(t, `^[0-9]{8}$`, code)

	bob := passkey.New("localhost", "http://localhost:8080")
	wrong := "00000000"
	if code == wrong {
		wrong = "11111111"
	}
	e, err := b.client.BeginEnrollment(ctx, "bob")
	require.NoError(t, err)
	_, err = b.client.FinishEnrollment(ctx, e.EnrollmentID, bob.Create(e, wrong))
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, "bad_code", se.Reason)

	e, err = b.client.BeginEnrollment(ctx, "bob")
	require.NoError(t, err)
	line, err := b.client.FinishEnrollment(ctx, e.EnrollmentID, bob.Create(e, code))
	require.NoError(t, err)
	assert.Equal(t, bob.Line("bob"), line.Line)
	assert.True(t, line.Appended)
	file, err := os.ReadFile(b.env[envOperators])
	require.NoError(t, err)
	assert.Equal(t, bob.Line("bob")+"\n", string(file))

	// bob's passkey runs a verb at once; enrollment is closed.
	res, err := b.run(t, "reset", ptr(bob.Get(b.challenge(t, "reset"))))
	require.NoError(t, err)
	assert.Equal(t, "bob", res.Operator)
	_, err = b.client.BeginEnrollment(ctx, "carol")
	require.True(t, errors.As(err, &se))
	assert.Equal(t, "enrollment_closed", se.Reason)
}

// TestBinaryPresenceOff: only an explicit BREAKGLASS_PRESENCE=off runs a
// mutating verb without a passkey, and then says so at start and in every
// such audit line.
func TestBinaryPresenceOff(t *testing.T) {
	b := startSimBinary(t, func(f *fixture) { f.env[envPresence] = "off" })
	b.log.WaitFor(t, "@level", "warn", 5*time.Second)
	assert.Contains(t, b.log.String(), "OPERATOR PRESENCE IS OFF")
	_, err := b.run(t, "reset", nil)
	require.NoError(t, err)
	lines := b.log.WaitFor(t, "verb", "reset", 5*time.Second)
	assert.Equal(t, "off", lines[len(lines)-1]["presence"])
	vl, err := b.client.Verbs(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "off", vl.Presence)
}

// newHostSigner returns a fresh Ed25519 host key.
func newHostSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

func ptr[T any](v T) *T { return &v }
