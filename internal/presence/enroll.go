package presence

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"
)

// Enrollment limits.
const (
	// EnrollmentCodeTTL is how long an enrollment code is good for.
	EnrollmentCodeTTL = 15 * time.Minute
	// EnrollmentTries is how many wrong codes close enrollment.
	EnrollmentTries = 5
	// EnrollmentTTL is how long a begun enrollment may be finished.
	EnrollmentTTL = 5 * time.Minute
	// maxPendingEnrollments bounds begun enrollments; the oldest is dropped.
	maxPendingEnrollments = 4
)

// enrollment is the one-time enrollment state. The Verifier's lock guards
// it.
type enrollment struct {
	open    bool
	code    string
	expires time.Time
	tries   int
	pending []pendingEnrollment
}

type pendingEnrollment struct {
	id        string
	name      string
	challenge []byte
	expires   time.Time
}

// EnrollmentStart is the answer to beginning an enrollment: what
// navigator.credentials.create needs.
type EnrollmentStart struct {
	ID        string
	Challenge []byte
	RPID      string
	UserID    []byte
}

// Registration is what navigator.credentials.create returned, with the code
// the operator typed.
type Registration struct {
	Code              string
	CredentialID      []byte
	ClientDataJSON    []byte
	AttestationObject []byte
}

// OpenEnrollment opens enrollment with a fresh one-time 8-digit code, good
// for EnrollmentCodeTTL and EnrollmentTries wrong codes; the caller prints
// it where only the installer reads it (the keyholder's own log).
func (v *Verifier) OpenEnrollment() (code string, expires time.Time, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	code, err = digits(v.rand, 8)
	if err != nil {
		return "", time.Time{}, err
	}
	v.enroll = enrollment{open: true, code: code, expires: v.now().Add(EnrollmentCodeTTL), tries: EnrollmentTries}
	return code, v.enroll.expires, nil
}

// EnrollmentOpen reports whether an enrollment could succeed now.
func (v *Verifier) EnrollmentOpen() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.enrollOpenLocked(v.now())
}

func (v *Verifier) enrollOpenLocked(now time.Time) bool {
	if v.enroll.open && !now.Before(v.enroll.expires) {
		v.enroll = enrollment{}
	}
	return v.enroll.open
}

// BeginEnrollment starts enrolling a passkey for the operator name.
func (v *Verifier) BeginEnrollment(name string) (EnrollmentStart, error) {
	if err := CheckName(name); err != nil {
		return EnrollmentStart{}, refuse(ReasonMalformed, err.Error(), nil)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if !v.enrollOpenLocked(now) {
		return EnrollmentStart{}, refuse(ReasonEnrollmentClosed, "enrollment is closed (restart the keyholder with BREAKGLASS_ENROLL=open for a new code)", nil)
	}
	buf := make([]byte, 16+32+16)
	if _, err := io.ReadFull(v.rand, buf); err != nil {
		return EnrollmentStart{}, fmt.Errorf("enrollment randomness: %w", err)
	}
	p := pendingEnrollment{id: Encode(buf[:16]), name: name, challenge: buf[16:48], expires: now.Add(EnrollmentTTL)}
	if len(v.enroll.pending) >= maxPendingEnrollments {
		v.enroll.pending = slices.Delete(v.enroll.pending, 0, len(v.enroll.pending)-maxPendingEnrollments+1)
	}
	v.enroll.pending = append(v.enroll.pending, p)
	return EnrollmentStart{ID: p.id, Challenge: slices.Clone(p.challenge), RPID: v.rpID, UserID: slices.Clone(buf[48:])}, nil
}

// FinishEnrollment checks the code and the new credential and, when all
// holds, adds it to the operators and closes enrollment. The begun
// enrollment is consumed whatever the outcome; a wrong code uses up one of
// the tries. The checks follow
// https://www.w3.org/TR/webauthn-3/#sctn-registering-a-new-credential;
// the attestation statement (steps 19–21) is not checked: the code is the
// trust anchor.
func (v *Verifier) FinishEnrollment(id string, r Registration) (Credential, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if !v.enrollOpenLocked(now) {
		return Credential{}, refuse(ReasonEnrollmentClosed, "enrollment is closed", nil)
	}
	i := slices.IndexFunc(v.enroll.pending, func(p pendingEnrollment) bool { return p.id == id })
	if i < 0 {
		return Credential{}, refuse(ReasonUnknownEnrollment, "no such enrollment; start again", nil)
	}
	p := v.enroll.pending[i]
	v.enroll.pending = slices.Delete(v.enroll.pending, i, i+1)
	if subtle.ConstantTimeCompare([]byte(r.Code), []byte(v.enroll.code)) != 1 {
		v.enroll.tries--
		if v.enroll.tries <= 0 {
			v.enroll = enrollment{}
			return Credential{}, refuse(ReasonBadCode, "wrong enrollment code; no tries left, enrollment is closed", nil)
		}
		return Credential{}, refuse(ReasonBadCode, fmt.Sprintf("wrong enrollment code; %d tries left", v.enroll.tries), nil)
	}
	if !now.Before(p.expires) {
		return Credential{}, refuse(ReasonExpired, "the enrollment expired; start again", nil)
	}
	// Steps 5–6.
	cd, err := parseClientData(r.ClientDataJSON)
	if err != nil {
		return Credential{}, refuse(ReasonClientData, "clientDataJSON does not parse", err)
	}
	// Steps 7–9.
	if err := v.checkClientData(cd, typeCreate, p.challenge); err != nil {
		return Credential{}, err
	}
	// Step 12.
	ad, err := parseAttestationObject(r.AttestationObject)
	if err != nil {
		return Credential{}, refuse(ReasonBadKey, "the attestation object does not parse", err)
	}
	// Steps 13–16.
	if err := v.checkAuthData(ad); err != nil {
		return Credential{}, err
	}
	// Steps 18 and 23–24: the key's algorithm is one we verify (parsing
	// it checked that), the id is the one the browser reported, and new.
	if subtle.ConstantTimeCompare(ad.CredentialID, r.CredentialID) != 1 {
		return Credential{}, refuse(ReasonBadKey, "the credential id differs from the attested one", nil)
	}
	if slices.ContainsFunc(v.operators, func(c Credential) bool { return string(c.ID) == string(ad.CredentialID) }) {
		return Credential{}, refuse(ReasonDuplicate, "this passkey is already enrolled", nil)
	}
	c := Credential{Name: p.name, ID: ad.CredentialID, Key: ad.Key}
	v.operators = append(v.operators, c)
	v.signCounts[string(c.ID)] = ad.SignCount
	v.enroll = enrollment{}
	return c, nil
}

// digits returns n uniformly random decimal digits.
func digits(r io.Reader, n int) (string, error) {
	const limit = ^uint64(0) - ^uint64(0)%10
	out := make([]byte, n)
	var b [8]byte
	for i := 0; i < n; {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("code randomness: %w", err)
		}
		x := binary.BigEndian.Uint64(b[:])
		if x >= limit {
			continue
		}
		out[i] = byte('0' + x%10)
		i++
	}
	return string(out), nil
}
