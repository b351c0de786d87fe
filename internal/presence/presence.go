package presence

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Mode is whether the keyholder requires presence for mutating verbs.
type Mode string

// The modes. The zero Mode is required.
const (
	ModeRequired Mode = "required"
	// ModeOff runs mutating verbs without presence; only when set
	// explicitly, and every such run says so.
	ModeOff Mode = "off"
)

// Reason is the machine-readable code of a refusal, as the 403 answer's
// "reason" and the refusal metric's label carry it. The set is fixed.
type Reason string

// The reasons, in the order the checks run.
const (
	ReasonMissing           Reason = "presence_missing"
	ReasonMalformed         Reason = "malformed"
	ReasonUnknownChallenge  Reason = "unknown_challenge"
	ReasonReplayed          Reason = "challenge_used"
	ReasonExpired           Reason = "challenge_expired"
	ReasonWrongBinding      Reason = "challenge_mismatch"
	ReasonUnknownCredential Reason = "unknown_credential"
	ReasonClientData        Reason = "bad_client_data"
	ReasonType              Reason = "wrong_type"
	ReasonChallenge         Reason = "wrong_challenge"
	ReasonOrigin            Reason = "foreign_origin"
	ReasonAuthData          Reason = "bad_authenticator_data"
	ReasonRPID              Reason = "foreign_rp_id"
	ReasonUserPresent       Reason = "user_not_present"
	ReasonUserVerified      Reason = "user_not_verified"
	ReasonSignature         Reason = "bad_signature"
	ReasonSignCount         Reason = "sign_count"
	// Enrollment's own reasons.
	ReasonEnrollmentClosed  Reason = "enrollment_closed"
	ReasonBadCode           Reason = "bad_code"
	ReasonUnknownEnrollment Reason = "unknown_enrollment"
	ReasonBadKey            Reason = "bad_key"
	ReasonDuplicate         Reason = "duplicate_credential"
)

// Reasons lists every Reason, for metrics that start every label at zero.
func Reasons() []Reason {
	return []Reason{
		ReasonMissing, ReasonMalformed, ReasonUnknownChallenge, ReasonReplayed, ReasonExpired,
		ReasonWrongBinding, ReasonUnknownCredential, ReasonClientData, ReasonType, ReasonChallenge,
		ReasonOrigin, ReasonAuthData, ReasonRPID, ReasonUserPresent, ReasonUserVerified,
		ReasonSignature, ReasonSignCount, ReasonEnrollmentClosed, ReasonBadCode,
		ReasonUnknownEnrollment, ReasonBadKey, ReasonDuplicate,
	}
}

// Error is a refusal: Check is the plain sentence the caller gets after
// "operator presence: ", Detail what only the audit line gets.
type Error struct {
	Reason Reason
	Check  string
	Detail error
}

func (e *Error) Error() string { return "operator presence: " + e.Check }

// Unwrap returns the detail.
func (e *Error) Unwrap() error { return e.Detail }

// ReasonOf returns the Reason of a refusal, or "" when err is not one.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(r Reason, check string, detail error) *Error {
	return &Error{Reason: r, Check: check, Detail: detail}
}

// ErrConfig: an invalid Config.
var ErrConfig = errors.New("invalid presence config")

// Config configures a Verifier. Its zero value is refused: RPID and Origins
// have no safe default.
type Config struct {
	// RPID is the WebAuthn relying party id: the site's host name (never an
	// IP address).
	RPID string
	// Origins are the accepted origins (`https://host[:port]`; `http://`
	// only for localhost). Each must be the RPID or a subdomain of it.
	Origins []string
	// Operators are the enrolled credentials (the operators file).
	Operators []Credential
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness for challenges and codes; nil means
	// crypto/rand.
	Rand io.Reader
}

// Verifier issues challenges and verifies assertions. It is safe for
// concurrent use.
type Verifier struct {
	rpID     string
	rpIDHash [32]byte
	origins  []string
	now      func() time.Time
	rand     io.Reader

	// mu protects the following.
	mu         sync.Mutex
	operators  []Credential
	signCounts map[string]uint32
	challenges challenges
	enroll     enrollment
}

// New checks cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if err := checkRPID(cfg.RPID); err != nil {
		return nil, err
	}
	if len(cfg.Origins) == 0 {
		return nil, fmt.Errorf("%w: no accepted origin", ErrConfig)
	}
	for _, o := range cfg.Origins {
		if err := checkOrigin(o, cfg.RPID); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, c := range cfg.Operators {
		if seen[string(c.ID)] {
			return nil, fmt.Errorf("%w: credential %s listed twice", ErrConfig, Encode(c.ID))
		}
		seen[string(c.ID)] = true
	}
	v := &Verifier{
		rpID:       cfg.RPID,
		rpIDHash:   sha256.Sum256([]byte(cfg.RPID)),
		origins:    slices.Clone(cfg.Origins),
		now:        cfg.Now,
		rand:       cfg.Rand,
		operators:  slices.Clone(cfg.Operators),
		signCounts: map[string]uint32{},
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	v.challenges.rand = v.rand
	return v, nil
}

// checkRPID refuses an RP ID that is empty, an IP address, or not a host
// name.
func checkRPID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: no RP ID (the site's host name)", ErrConfig)
	case net.ParseIP(strings.Trim(id, "[]")) != nil:
		return fmt.Errorf("%w: RP ID %q is an IP address; WebAuthn needs a host name", ErrConfig, id)
	case len(id) > 253 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" ||
		strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") || strings.Contains(id, ".."):
		return fmt.Errorf("%w: RP ID %q is not a lower-case host name", ErrConfig, id)
	}
	return nil
}

// checkOrigin refuses an origin that is not scheme://host[:port] for rpID
// or a subdomain of it; plain http only for localhost.
func checkOrigin(o, rpID string) error {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || o != u.Scheme+"://"+u.Host {
		return fmt.Errorf("%w: origin %q is not scheme://host[:port]", ErrConfig, o)
	}
	h := u.Hostname()
	if h != rpID && !strings.HasSuffix(h, "."+rpID) {
		return fmt.Errorf("%w: origin %q is not on RP ID %q", ErrConfig, o, rpID)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (h == "localhost" || strings.HasSuffix(h, ".localhost")):
	default:
		return fmt.Errorf("%w: origin %q must be https (http only for localhost)", ErrConfig, o)
	}
	return nil
}

// RPID returns the relying party id.
func (v *Verifier) RPID() string { return v.rpID }

// Operators returns how many credentials are enrolled.
func (v *Verifier) Operators() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.operators)
}

// CredentialIDs returns the enrolled credential ids (the browser's
// allowCredentials).
func (v *Verifier) CredentialIDs() [][]byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	ids := make([][]byte, len(v.operators))
	for i, c := range v.operators {
		ids[i] = slices.Clone(c.ID)
	}
	return ids
}

// Issue makes a challenge bound to b.
func (v *Verifier) Issue(b Binding) (Challenge, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.challenges.issue(b, v.now())
}

// Assertion is what the browser's navigator.credentials.get returned, with
// the id of the challenge it answers.
type Assertion struct {
	ChallengeID       string
	CredentialID      []byte
	ClientDataJSON    []byte
	AuthenticatorData []byte
	Signature         []byte
}

// Verify checks that a answers a challenge issued for b and was made by an
// enrolled operator's passkey with the user present and verified, and
// returns that operator's credential. The challenge is consumed whatever
// the outcome. A refusal is an *Error naming the check that failed.
//
// The checks follow the numbered steps of
// https://www.w3.org/TR/webauthn-3/#sctn-verifying-assertion; steps that
// concern the browser call itself (1–4), extensions (19) and attestation
// (23) have nothing to check here.
func (v *Verifier) Verify(b Binding, a Assertion) (Credential, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()

	// The challenge: issued by us, unexpired, unused, bound to exactly b.
	ch, err := v.challenges.take(a.ChallengeID, b, now)
	if err != nil {
		return Credential{}, err
	}
	// Steps 5–7: the credential is one of allowCredentials (every
	// enrolled one), so its owner is known, and with it the public key.
	i := slices.IndexFunc(v.operators, func(c Credential) bool { return subtle.ConstantTimeCompare(c.ID, a.CredentialID) == 1 })
	if i < 0 {
		return Credential{}, refuse(ReasonUnknownCredential, "the passkey is not in the operators file", nil)
	}
	cred := v.operators[i]
	// Steps 8–10: parse clientDataJSON.
	cd, err := parseClientData(a.ClientDataJSON)
	if err != nil {
		return Credential{}, refuse(ReasonClientData, "clientDataJSON does not parse", err)
	}
	if err := v.checkClientData(cd, typeGet, ch.Challenge); err != nil {
		return Credential{}, err
	}
	// Steps 15–17: authenticator data.
	ad, err := parseAuthData(a.AuthenticatorData, false)
	if err != nil {
		return Credential{}, refuse(ReasonAuthData, "authenticator data does not parse", err)
	}
	if err := v.checkAuthData(ad); err != nil {
		return Credential{}, err
	}
	// Steps 20–21: the signature over authenticatorData ‖ SHA-256(clientDataJSON).
	h := sha256.Sum256(a.ClientDataJSON)
	msg := append(slices.Clip(a.AuthenticatorData), h[:]...)
	if len(a.Signature) == 0 || len(a.Signature) > MaxSignature || !cred.Key.verify(msg, a.Signature) {
		return Credential{}, refuse(ReasonSignature, "the signature does not verify with "+cred.Name+"'s passkey", nil)
	}
	// Step 22: a non-zero signCount goes up (else the authenticator may
	// have been cloned).
	last := v.signCounts[string(cred.ID)]
	if (ad.SignCount != 0 || last != 0) && ad.SignCount <= last {
		return Credential{}, refuse(ReasonSignCount, fmt.Sprintf("the passkey's signature counter went from %d to %d (a cloned authenticator?)", last, ad.SignCount), nil)
	}
	v.signCounts[string(cred.ID)] = ad.SignCount
	return cred, nil
}

// checkClientData is steps 11–13 of verifying an assertion (7–9 of
// registering a credential): type, challenge, origin.
func (v *Verifier) checkClientData(cd clientData, wantType string, challenge []byte) error {
	// Step 11.
	if cd.Type != wantType {
		return refuse(ReasonType, fmt.Sprintf("clientDataJSON type is %q, not %q", cd.Type, wantType), nil)
	}
	// Step 12.
	got, err := Decode(cd.Challenge)
	if err != nil || subtle.ConstantTimeCompare(got, challenge) != 1 {
		return refuse(ReasonChallenge, "clientDataJSON carries another challenge than the one issued", err)
	}
	// Step 13 (and 14: never inside a cross-origin frame).
	if !slices.Contains(v.origins, cd.Origin) || cd.CrossOrigin {
		return refuse(ReasonOrigin, fmt.Sprintf("origin %q is not one this keyholder accepts", cd.Origin), nil)
	}
	return nil
}

// checkAuthData is steps 15–17 of verifying an assertion (13–15 of
// registering): rpIdHash, user present, user verified.
func (v *Verifier) checkAuthData(ad authData) error {
	// Step 15.
	if subtle.ConstantTimeCompare(ad.RPIDHash[:], v.rpIDHash[:]) != 1 {
		return refuse(ReasonRPID, "the authenticator signed for another RP ID than "+v.rpID, nil)
	}
	// Step 16.
	if ad.Flags&flagUP == 0 {
		return refuse(ReasonUserPresent, "the authenticator says no user was present", nil)
	}
	// Step 17.
	if ad.Flags&flagUV == 0 {
		return refuse(ReasonUserVerified, "the authenticator did not verify the user (PIN, fingerprint or face)", nil)
	}
	return nil
}
