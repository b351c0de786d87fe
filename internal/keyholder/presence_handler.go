package keyholder

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"breakglass/internal/ipc"
	"breakglass/internal/verbs"
)

// maxEnrollmentBody bounds POST /v1/enrollments/{id}: an attestation
// object of up to 8 KiB, base64url.
const maxEnrollmentBody = 16 << 10

// maxEnrollmentID is the length of an enrollment id (128 bits, base64url).
const maxEnrollmentID = 22

// challenge answers POST /v1/challenges.
func (h *handler) challenge(w http.ResponseWriter, r *http.Request, a *audit) {
	var req ipc.ChallengeRequest
	// guest-exec's argv rides in its challenge as in the verb: the same cap.
	if status, err := decodeBody(w, r, verbs.MaxBodyArgs, &req); err != nil {
		a.err = err
		writeRefusal(w, status, reasonOf(status, err), err.Error())
		return
	}
	if err := checkActor(req.Actor); err != nil {
		a.err = err
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.actor = req.Actor
	c, b, err := h.k.Challenge(req)
	switch {
	case errors.Is(err, ErrPresenceOff):
		a.err = err
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, verbs.ErrUnknown), errors.Is(err, ErrChallengeRequest):
		a.err = err
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		a.err = err
		writeError(w, http.StatusInternalServerError, "could not issue a challenge")
		return
	}
	// The audit line shows what the challenge was issued for, and the
	// challenge itself, so a later assertion can be matched to it.
	a.extra = append(a.extra, "actor", req.Actor, "challenge_id", c.ChallengeID, "challenge", c.Challenge, "bound_to", b.String())
	writeJSON(w, http.StatusCreated, c)
}

// login answers POST /v1/logins.
func (h *handler) login(w http.ResponseWriter, r *http.Request, a *audit) {
	var req ipc.LoginRequest
	if status, err := decodeBody(w, r, ipc.MaxRequestBody, &req); err != nil {
		a.err = err
		writeRefusal(w, status, reasonOf(status, err), err.Error())
		return
	}
	op, err := h.k.Login(req.Presence)
	if writeRefusedPresence(w, err, a) {
		return
	}
	if err != nil || op == "" {
		// Only a verified assertion names an operator; anything else is
		// no sign-in (fail closed).
		a.err = fmt.Errorf("login: no operator: %v", err)
		writeError(w, http.StatusInternalServerError, "the sign-in could not be checked")
		return
	}
	a.operator = op
	writeJSON(w, http.StatusOK, ipc.Login{Operator: op})
}

// beginEnrollment answers POST /v1/enrollments.
func (h *handler) beginEnrollment(w http.ResponseWriter, r *http.Request, a *audit) {
	var req ipc.EnrollmentRequest
	if status, err := decodeBody(w, r, ipc.MaxRequestBody, &req); err != nil {
		a.err = err
		writeRefusal(w, status, reasonOf(status, err), err.Error())
		return
	}
	e, err := h.k.BeginEnrollment(req.Name)
	if writeRefusedPresence(w, err, a) {
		return
	}
	if err != nil {
		a.err = err
		writeError(w, http.StatusInternalServerError, "could not begin an enrollment")
		return
	}
	a.extra = append(a.extra, "name", req.Name, "enrollment_id", e.EnrollmentID)
	writeJSON(w, http.StatusCreated, e)
}

// finishEnrollment answers POST /v1/enrollments/{id}.
func (h *handler) finishEnrollment(w http.ResponseWriter, r *http.Request, id string, a *audit) {
	if len(id) != maxEnrollmentID || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		a.err = errors.New("malformed enrollment id")
		writeError(w, http.StatusNotFound, "no such enrollment")
		return
	}
	var req ipc.EnrollmentFinish
	if status, err := decodeBody(w, r, maxEnrollmentBody, &req); err != nil {
		a.err = err
		writeRefusal(w, status, reasonOf(status, err), err.Error())
		return
	}
	line, name, err := h.k.FinishEnrollment(id, req)
	if writeRefusedPresence(w, err, a) {
		return
	}
	a.operator = name
	a.extra = append(a.extra, "enrollment_id", id, "credential_id", req.CredentialID, "appended", line.Appended)
	writeJSON(w, http.StatusCreated, line)
}

// writeRefusedPresence answers the refusals the presence routes share: 409
// when presence is off, 403 with the reason when a check failed. It reports
// whether it wrote an answer.
func writeRefusedPresence(w http.ResponseWriter, err error, a *audit) bool {
	if errors.Is(err, ErrPresenceOff) {
		a.err = err
		writeError(w, http.StatusConflict, err.Error())
		return true
	}
	return writePresenceError(w, err, a)
}
