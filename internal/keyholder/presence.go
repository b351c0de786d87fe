package keyholder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"breakglass/internal/ipc"
	"breakglass/internal/presence"
	"breakglass/internal/verbs"
)

// ErrPresenceOff: a challenge, login or enrollment was asked of a
// keyholder that runs with presence off.
var ErrPresenceOff = errors.New("operator presence is off on this keyholder (BREAKGLASS_PRESENCE=off): there is nothing to sign and no passkey sign-in")

// ErrChallengeRequest: a challenge request names no mutating verb, or
// gives arguments to a verb without them, or mixes a login with a verb.
var ErrChallengeRequest = errors.New("bad challenge request")

// checkPresence verifies the assertion for a mutating verb and returns the
// operator whose passkey made it; with presence off it returns "" and nil.
func (k *Keyholder) checkPresence(verb string, args []string, p *ipc.Presence) (string, error) {
	if k.presence == nil {
		return "", nil
	}
	b := presence.Binding{Purpose: presence.PurposeVerb, Verb: verb, Args: args, VMID: k.vmid}
	return k.verify(b, p)
}

// verify checks p for b, counting a refusal by its reason.
func (k *Keyholder) verify(b presence.Binding, p *ipc.Presence) (string, error) {
	a, err := assertionOf(p)
	if err == nil {
		var cred presence.Credential
		cred, err = k.presence.Verify(b, a)
		if err == nil {
			return cred.Name, nil
		}
	}
	k.metrics.refusals.WithLabelValues(string(presence.ReasonOf(err))).Inc()
	return "", err
}

// assertionOf decodes the wire assertion; a missing one or a field that is
// not base64url is a refusal.
func assertionOf(p *ipc.Presence) (presence.Assertion, error) {
	if p == nil {
		return presence.Assertion{}, &presence.Error{Reason: presence.ReasonMissing,
			Check: "a mutating verb needs the operator's passkey: ask for a challenge (POST /v1/challenges) and send the assertion as \"presence\""}
	}
	a := presence.Assertion{ChallengeID: p.ChallengeID}
	for _, f := range []struct {
		name string
		in   string
		out  *[]byte
	}{
		{"credential_id", p.CredentialID, &a.CredentialID},
		{"client_data_json", p.ClientDataJSON, &a.ClientDataJSON},
		{"authenticator_data", p.AuthenticatorData, &a.AuthenticatorData},
		{"signature", p.Signature, &a.Signature},
	} {
		b, err := presence.Decode(f.in)
		if err != nil || len(b) == 0 {
			return a, &presence.Error{Reason: presence.ReasonMalformed, Check: "presence." + f.name + " is not unpadded base64url"}
		}
		*f.out = b
	}
	return a, nil
}

// Challenge issues a presence challenge for a mutating verb or a login.
func (k *Keyholder) Challenge(req ipc.ChallengeRequest) (ipc.Challenge, presence.Binding, error) {
	if k.presence == nil {
		return ipc.Challenge{}, presence.Binding{}, ErrPresenceOff
	}
	var b presence.Binding
	switch req.Purpose {
	case ipc.PurposeLogin:
		if req.Verb != "" || req.Args != nil {
			return ipc.Challenge{}, b, fmt.Errorf("%w: a login challenge names no verb", ErrChallengeRequest)
		}
		b = presence.Binding{Purpose: presence.PurposeLogin}
	case "", ipc.PurposeVerb:
		v, err := verbs.Parse(req.Verb)
		if err != nil {
			return ipc.Challenge{}, b, err
		}
		if !v.Mutating {
			return ipc.Challenge{}, b, fmt.Errorf("%w: %s only reads and needs no presence", ErrChallengeRequest, v.Name)
		}
		// The challenge of a verb with an argv is bound to that argv, so
		// the operator approves the command he reads and no other.
		if err := v.CheckArgs(req.Args); err != nil {
			return ipc.Challenge{}, b, fmt.Errorf("%w: %w", ErrChallengeRequest, err)
		}
		b = presence.Binding{Purpose: presence.PurposeVerb, Verb: string(v.Name), Args: req.Args, VMID: k.vmid}
	default:
		return ipc.Challenge{}, b, fmt.Errorf("%w: purpose %q (verb or login)", ErrChallengeRequest, req.Purpose)
	}
	c, err := k.presence.Issue(b)
	if err != nil {
		return ipc.Challenge{}, b, err
	}
	ids := []string{}
	for _, id := range k.presence.CredentialIDs() {
		ids = append(ids, presence.Encode(id))
	}
	return ipc.Challenge{
		ChallengeID:   c.ID,
		Challenge:     presence.Encode(c.Challenge),
		RPID:          k.presence.RPID(),
		CredentialIDs: ids,
		ExpiresAt:     c.ExpiresAt.UTC(),
	}, b, nil
}

// Login verifies a sign-in assertion and returns the operator.
func (k *Keyholder) Login(p *ipc.Presence) (string, error) {
	if k.presence == nil {
		return "", ErrPresenceOff
	}
	return k.verify(presence.Binding{Purpose: presence.PurposeLogin}, p)
}

// BeginEnrollment starts enrolling a passkey for the operator name.
func (k *Keyholder) BeginEnrollment(name string) (ipc.Enrollment, error) {
	if k.presence == nil {
		return ipc.Enrollment{}, ErrPresenceOff
	}
	s, err := k.presence.BeginEnrollment(name)
	if err != nil {
		k.metrics.refusals.WithLabelValues(string(presence.ReasonOf(err))).Inc()
		return ipc.Enrollment{}, err
	}
	return ipc.Enrollment{EnrollmentID: s.ID, Challenge: presence.Encode(s.Challenge), RPID: s.RPID, UserID: presence.Encode(s.UserID)}, nil
}

// FinishEnrollment checks the code and the new passkey, and returns its
// operators-file line, appended to the file when it is writable.
func (k *Keyholder) FinishEnrollment(id string, f ipc.EnrollmentFinish) (ipc.EnrollmentLine, string, error) {
	if k.presence == nil {
		return ipc.EnrollmentLine{}, "", ErrPresenceOff
	}
	reg := presence.Registration{Code: f.Code}
	for _, x := range []struct {
		name string
		in   string
		out  *[]byte
	}{
		{"credential_id", f.CredentialID, &reg.CredentialID},
		{"client_data_json", f.ClientDataJSON, &reg.ClientDataJSON},
		{"attestation_object", f.AttestationObject, &reg.AttestationObject},
	} {
		b, err := presence.Decode(x.in)
		if err != nil || len(b) == 0 {
			k.metrics.refusals.WithLabelValues(string(presence.ReasonMalformed)).Inc()
			return ipc.EnrollmentLine{}, "", &presence.Error{Reason: presence.ReasonMalformed, Check: x.name + " is not unpadded base64url"}
		}
		*x.out = b
	}
	cred, err := k.presence.FinishEnrollment(id, reg)
	if err != nil {
		k.metrics.refusals.WithLabelValues(string(presence.ReasonOf(err))).Inc()
		return ipc.EnrollmentLine{}, "", err
	}
	line := cred.Line()
	err = appendLine(k.operatorsPath, line)
	if err != nil {
		k.log.Warn("enrollment: the operators file is not writable here; add the line to it (the ConfigMap)", "operator", cred.Name, "file", k.operatorsPath, "error", err.Error())
	}
	return ipc.EnrollmentLine{Line: line, Appended: err == nil}, cred.Name, nil
}

// appendLine appends line to the operators file at path (created 0644 if
// missing: it holds public keys only), starting a new line if the file
// does not end with one.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	prefix := ""
	if info.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, info.Size()-1); err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(last, []byte("\n")) {
			prefix = "\n"
		}
	}
	if _, err := f.WriteString(prefix + line + "\n"); err != nil {
		return err
	}
	return f.Close()
}
