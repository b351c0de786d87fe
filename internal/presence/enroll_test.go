package presence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
)

// begin starts an enrollment for name, in the wire form.
func (f *fixture) begin(t *testing.T, name string) (ipc.Enrollment, string) {
	t.Helper()
	s, err := f.v.BeginEnrollment(name)
	require.NoError(t, err)
	assert.Equal(t, rpID, s.RPID)
	return ipc.Enrollment{EnrollmentID: s.ID, Challenge: presence.Encode(s.Challenge), RPID: s.RPID, UserID: presence.Encode(s.UserID)}, s.ID
}

func registration(t *testing.T, w ipc.EnrollmentFinish) presence.Registration {
	t.Helper()
	dec := func(s string) []byte {
		b, err := presence.Decode(s)
		require.NoError(t, err)
		return b
	}
	return presence.Registration{Code: w.Code, CredentialID: dec(w.CredentialID), ClientDataJSON: dec(w.ClientDataJSON), AttestationObject: dec(w.AttestationObject)}
}

func TestEnrollmentValid(t *testing.T) {
	f := newFixture(t)
	code, exp, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9]{8}$`, code)
	assert.Equal(t, f.clock.Now().Add(15*time.Minute), exp)

	bob := passkey.New(rpID, origin)
	e, id := f.begin(t, "bob")
	cred, err := f.v.FinishEnrollment(id, registration(t, bob.Create(e, code)))
	require.NoError(t, err)
	assert.Equal(t, bob.Line("bob"), cred.Line(), "the operators-file line")
	assert.Equal(t, 2, f.v.Operators())

	// bob's passkey works at once, and enrollment closed.
	ch := f.issue(t, verb("reset"))
	got, err := f.v.Verify(verb("reset"), assertion(t, bob.Get(ch)))
	require.NoError(t, err)
	assert.Equal(t, "bob", got.Name)
	assert.False(t, f.v.EnrollmentOpen())
	_, err = f.v.BeginEnrollment("carol")
	requireReason(t, err, presence.ReasonEnrollmentClosed)
}

func TestEnrollmentClosedByDefault(t *testing.T) {
	f := newFixture(t)
	_, err := f.v.BeginEnrollment("bob")
	requireReason(t, err, presence.ReasonEnrollmentClosed)
}

// Five wrong codes close enrollment, even for the right code afterwards.
func TestEnrollmentFiveTries(t *testing.T) {
	f := newFixture(t)
	code, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	bob := passkey.New(rpID, origin)
	wrong := "00000000"
	if code == wrong {
		wrong = "11111111"
	}
	for i := 1; i <= presence.EnrollmentTries; i++ {
		e, id := f.begin(t, "bob")
		_, err := f.v.FinishEnrollment(id, registration(t, bob.Create(e, wrong)))
		requireReason(t, err, presence.ReasonBadCode)
	}
	_, err = f.v.BeginEnrollment("bob")
	requireReason(t, err, presence.ReasonEnrollmentClosed)
}

// The code is good for 15 minutes.
func TestEnrollmentCodeExpires(t *testing.T) {
	f := newFixture(t)
	code, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	bob := passkey.New(rpID, origin)
	e, id := f.begin(t, "bob")
	f.clock.Advance(presence.EnrollmentCodeTTL)
	_, err = f.v.FinishEnrollment(id, registration(t, bob.Create(e, code)))
	requireReason(t, err, presence.ReasonEnrollmentClosed)
}

// A begun enrollment expires after EnrollmentTTL, though the code (good
// for longer) is still valid.
func TestEnrollmentBegunExpires(t *testing.T) {
	f := newFixture(t)
	code, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	bob := passkey.New(rpID, origin)
	e, id := f.begin(t, "bob")
	f.clock.Advance(presence.EnrollmentTTL)
	_, err = f.v.FinishEnrollment(id, registration(t, bob.Create(e, code)))
	requireReason(t, err, presence.ReasonExpired)
}

// The registration's own checks (https://www.w3.org/TR/webauthn-3/#sctn-registering-a-new-credential).
func TestEnrollmentChecks(t *testing.T) {
	cases := []struct {
		name  string
		tweak passkey.Tweak
		want  presence.Reason
	}{
		{"step07-type-get", passkey.Tweak{Type: "webauthn.get"}, presence.ReasonType},
		{"step08-challenge", passkey.Tweak{Challenge: presence.Encode(make([]byte, 32))}, presence.ReasonChallenge},
		{"step09-origin", passkey.Tweak{Origin: "https://evil.example"}, presence.ReasonOrigin},
		{"step13-rp-id", passkey.Tweak{RPID: "evil.example"}, presence.ReasonRPID},
		{"step14-up", passkey.Tweak{Flags: passkey.Flags(passkey.FlagUV)}, presence.ReasonUserPresent},
		{"step15-uv", passkey.Tweak{Flags: passkey.Flags(passkey.FlagUP)}, presence.ReasonUserVerified},
		{"credential-id-differs", passkey.Tweak{CredentialID: []byte("other")}, presence.ReasonBadKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			code, _, err := f.v.OpenEnrollment()
			require.NoError(t, err)
			e, id := f.begin(t, "bob")
			_, err = f.v.FinishEnrollment(id, registration(t, passkey.New(rpID, origin).Create(e, code, tc.tweak)))
			requireReason(t, err, tc.want)
			assert.Equal(t, 1, f.v.Operators())
		})
	}
}

// An enrolled passkey cannot be enrolled again.
func TestEnrollmentDuplicate(t *testing.T) {
	f := newFixture(t)
	code, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	e, id := f.begin(t, "alice2")
	_, err = f.v.FinishEnrollment(id, registration(t, f.alice.Create(e, code)))
	requireReason(t, err, presence.ReasonDuplicate)
}

// A begun enrollment is used once.
func TestEnrollmentSingleUse(t *testing.T) {
	f := newFixture(t)
	code, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	bob := passkey.New(rpID, origin)
	e, id := f.begin(t, "bob")
	_, err = f.v.FinishEnrollment(id, registration(t, bob.Create(e, code, passkey.Tweak{Origin: "https://evil.example"})))
	requireReason(t, err, presence.ReasonOrigin)
	_, err = f.v.FinishEnrollment(id, registration(t, bob.Create(e, code)))
	requireReason(t, err, presence.ReasonUnknownEnrollment)
}

func TestEnrollmentName(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.v.OpenEnrollment()
	require.NoError(t, err)
	for _, n := range []string{"", "two words", "tab\t", "new\nline", string(make([]byte, 65)), "émile"} {
		_, err := f.v.BeginEnrollment(n)
		requireReason(t, err, presence.ReasonMalformed)
	}
}
