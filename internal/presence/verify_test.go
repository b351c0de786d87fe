package presence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
)

// The tests below follow https://www.w3.org/TR/webauthn-3/#sctn-verifying-assertion
// step by step, after the keyholder's own checks of the challenge.

func TestAssertionValid(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	cred, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch)))
	require.NoError(t, err)
	assert.Equal(t, "alice", cred.Name)
}

func TestAssertionLoginValid(t *testing.T) {
	f := newFixture(t)
	login := presence.Binding{Purpose: presence.PurposeLogin}
	ch := f.issue(t, login)
	cred, err := f.v.Verify(login, assertion(t, f.alice.Get(ch)))
	require.NoError(t, err)
	assert.Equal(t, "alice", cred.Name)
}

// The challenge: one the keyholder issued.
func TestAssertionChallengeUnknown(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	ch.ChallengeID = presence.Encode(make([]byte, 16))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch)))
	requireReason(t, err, presence.ReasonUnknownChallenge)
}

// The challenge: unused (a replayed assertion is refused).
func TestAssertionChallengeReplayed(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("stop"))
	a := assertion(t, f.alice.Get(ch))
	_, err := f.v.Verify(verb("stop"), a)
	require.NoError(t, err)
	_, err = f.v.Verify(verb("stop"), a)
	requireReason(t, err, presence.ReasonReplayed)
}

// The challenge: unexpired (120 s).
func TestAssertionChallengeExpired(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("stop"))
	f.clock.Advance(presence.ChallengeTTL - time.Millisecond)
	ch2 := f.issue(t, verb("stop"))
	_, err := f.v.Verify(verb("stop"), assertion(t, f.alice.Get(ch2)))
	require.NoError(t, err, "a challenge just inside its life is good")
	f.clock.Advance(time.Millisecond)
	_, err = f.v.Verify(verb("stop"), assertion(t, f.alice.Get(ch)))
	requireReason(t, err, presence.ReasonExpired)
}

// The challenge: bound to this verb, argv, VM and purpose.
func TestAssertionChallengeBinding(t *testing.T) {
	cases := []struct {
		name        string
		issued, use presence.Binding
	}{
		{"cross-verb", verb("status"), verb("reset")},
		{"stop-for-reset", verb("stop"), verb("reset")},
		{"wrong-argv", verb("guest-exec", "systemctl", "status"), verb("guest-exec", "rm", "-rf", "/")},
		{"argv-added", verb("guest-exec"), verb("guest-exec", "reboot")},
		{"argv-dropped", verb("guest-exec", "uptime"), verb("guest-exec")},
		{"other-vm", verb("reset"), presence.Binding{Purpose: presence.PurposeVerb, Verb: "reset", VMID: 103}},
		{"login-for-verb", presence.Binding{Purpose: presence.PurposeLogin}, verb("reset")},
		{"verb-for-login", verb("reset"), presence.Binding{Purpose: presence.PurposeLogin}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ch := f.issue(t, tc.issued)
			_, err := f.v.Verify(tc.use, assertion(t, f.alice.Get(ch)))
			requireReason(t, err, presence.ReasonWrongBinding)
		})
	}
}

// A challenge is consumed by its first use, valid or not.
func TestChallengeConsumedByFailure(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Flags: passkey.Flags(passkey.FlagUP)})))
	requireReason(t, err, presence.ReasonUserVerified)
	_, err = f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch)))
	requireReason(t, err, presence.ReasonReplayed)
}

// At most 16 challenges wait; the 17th drops the oldest.
func TestChallengeOutstandingBounded(t *testing.T) {
	f := newFixture(t)
	first := f.issue(t, verb("reset"))
	var last = first
	for range presence.MaxOutstanding {
		last = f.issue(t, verb("reset"))
	}
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(first)))
	requireReason(t, err, presence.ReasonUnknownChallenge)
	_, err = f.v.Verify(verb("reset"), assertion(t, f.alice.Get(last)))
	require.NoError(t, err)
}

// Sign-in challenges, which anyone who reaches the sign-in page can mint,
// never push a verb's challenge out while the operator taps: each purpose
// has its own MaxOutstanding.
func TestChallengeLoginFloodKeepsVerbChallenge(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	for range 4 * presence.MaxOutstanding {
		_, err := f.v.Issue(presence.Binding{Purpose: presence.PurposeLogin})
		require.NoError(t, err)
	}
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch)))
	require.NoError(t, err, "the verb's challenge outlived a flood of sign-in challenges")
}

// Each challenge is fresh, and different bindings never share one.
func TestChallengeFresh(t *testing.T) {
	f := newFixture(t)
	a, b := f.issue(t, verb("reset")), f.issue(t, verb("reset"))
	assert.NotEqual(t, a.ChallengeID, b.ChallengeID)
	assert.NotEqual(t, a.Challenge, b.Challenge)
	raw, err := presence.Decode(a.Challenge)
	require.NoError(t, err)
	assert.Len(t, raw, 32, "SHA-256")
	id, err := presence.Decode(a.ChallengeID)
	require.NoError(t, err)
	assert.Len(t, id, 16, "128 bits")
}

// Steps 5–7: the credential is an enrolled one.
func TestAssertionStep05UnknownCredential(t *testing.T) {
	f := newFixture(t)
	mallory := passkey.New(rpID, origin)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, mallory.Get(ch)))
	requireReason(t, err, presence.ReasonUnknownCredential)
}

// Step 6–7: the credential id names alice, but mallory signed.
func TestAssertionStep07KeyOfTheNamedCredential(t *testing.T) {
	f := newFixture(t)
	mallory := passkey.New(rpID, origin)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, mallory.Get(ch, passkey.Tweak{CredentialID: f.alice.ID})))
	requireReason(t, err, presence.ReasonSignature)
}

// Steps 9–10: clientDataJSON is UTF-8 JSON.
func TestAssertionStep10ClientDataMalformed(t *testing.T) {
	for name, cdj := range map[string]string{
		"empty":      "",
		"not-json":   "type=webauthn.get",
		"not-utf8":   "{\"type\":\"webauthn.get\xff\"}",
		"trailing":   `{"type":"webauthn.get"} {}`,
		"wrong-kind": `{"type":7}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ch := f.issue(t, verb("reset"))
			a := assertion(t, f.alice.Get(ch))
			a.ClientDataJSON = []byte(cdj)
			_, err := f.v.Verify(verb("reset"), a)
			requireReason(t, err, presence.ReasonClientData)
		})
	}
}

// Step 11: type is webauthn.get (a registration's answer is refused).
func TestAssertionStep11TypeCreate(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Type: "webauthn.create"})))
	requireReason(t, err, presence.ReasonType)
}

// Step 12: the challenge in clientDataJSON is the one issued.
func TestAssertionStep12ChallengeMismatch(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	other := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Challenge: other.Challenge})))
	requireReason(t, err, presence.ReasonChallenge)
}

// Step 13: the origin is one of BREAKGLASS_ORIGINS.
func TestAssertionStep13ForeignOrigin(t *testing.T) {
	for _, o := range []string{"https://evil.example", "http://localhost:8081", "https://localhost:8080", "http://localhost:8080/"} {
		t.Run(o, func(t *testing.T) {
			f := newFixture(t)
			ch := f.issue(t, verb("reset"))
			_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Origin: o})))
			requireReason(t, err, presence.ReasonOrigin)
		})
	}
}

// Step 14: never inside a frame of another origin (crossOrigin true), even
// from an accepted origin.
func TestAssertionStep14CrossOrigin(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{CrossOrigin: true})))
	requireReason(t, err, presence.ReasonOrigin)
}

// Step 15: rpIdHash is SHA-256 of BREAKGLASS_RP_ID.
func TestAssertionStep15ForeignRPID(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{RPID: "evil.example"})))
	requireReason(t, err, presence.ReasonRPID)
}

// Authenticator data shorter than its fixed 37 bytes is refused.
func TestAssertionStep15AuthDataShort(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	a := assertion(t, f.alice.Get(ch))
	a.AuthenticatorData = a.AuthenticatorData[:36]
	_, err := f.v.Verify(verb("reset"), a)
	requireReason(t, err, presence.ReasonAuthData)
}

// Step 16: the UP flag is set.
func TestAssertionStep16UserNotPresent(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Flags: passkey.Flags(passkey.FlagUV)})))
	requireReason(t, err, presence.ReasonUserPresent)
}

// Step 17: the UV flag is set (user verification is required).
func TestAssertionStep17UserNotVerified(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{Flags: passkey.Flags(passkey.FlagUP)})))
	requireReason(t, err, presence.ReasonUserVerified)
}

// Steps 20–21: the signature verifies over authenticatorData ‖
// SHA-256(clientDataJSON).
func TestAssertionStep21BadSignature(t *testing.T) {
	cases := map[string]func(a *presence.Assertion){
		"signed-other-data": nil,
		"empty":             func(a *presence.Assertion) { a.Signature = nil },
		"truncated":         func(a *presence.Assertion) { a.Signature = a.Signature[:len(a.Signature)-1] },
		"client-data-changed": func(a *presence.Assertion) {
			a.ClientDataJSON = append(a.ClientDataJSON[:len(a.ClientDataJSON)-1], []byte(`,"x":1}`)...)
		},
		"auth-data-extended": func(a *presence.Assertion) { a.AuthenticatorData = append(a.AuthenticatorData, 0) },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ch := f.issue(t, verb("reset"))
			a := assertion(t, f.alice.Get(ch, passkey.Tweak{BadSignature: mod == nil}))
			if mod != nil {
				mod(&a)
			}
			_, err := f.v.Verify(verb("reset"), a)
			requireReason(t, err, presence.ReasonSignature)
		})
	}
}

// Step 22: a non-zero signCount goes up; zero stays allowed for passkeys
// that never count.
func TestAssertionStep22SignCount(t *testing.T) {
	f := newFixture(t)
	use := func(n uint32) error {
		ch := f.issue(t, verb("reset"))
		_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{SignCount: passkey.Count(n)})))
		return err
	}
	require.NoError(t, use(0))
	require.NoError(t, use(0), "a passkey that never counts")
	require.NoError(t, use(5))
	requireReason(t, use(5), presence.ReasonSignCount)
	requireReason(t, use(3), presence.ReasonSignCount)
	requireReason(t, use(0), presence.ReasonSignCount)
	require.NoError(t, use(6))
}

// A refused assertion does not move the counter.
func TestAssertionStep22CounterOnlyAfterSuccess(t *testing.T) {
	f := newFixture(t)
	ch := f.issue(t, verb("reset"))
	_, err := f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{SignCount: passkey.Count(100), BadSignature: true})))
	requireReason(t, err, presence.ReasonSignature)
	ch = f.issue(t, verb("reset"))
	_, err = f.v.Verify(verb("reset"), assertion(t, f.alice.Get(ch, passkey.Tweak{SignCount: passkey.Count(1)})))
	require.NoError(t, err)
}
