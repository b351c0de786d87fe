package signin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/api/wire"
	"breakglass/internal/ipc"
	"breakglass/internal/power"
)

// Keyholder is the keyholder's presence API as sign-in uses it;
// *ipc.Client in the web.
type Keyholder interface {
	Challenge(ctx context.Context, req ipc.ChallengeRequest) (ipc.Challenge, error)
	Login(ctx context.Context, p ipc.Presence) (ipc.Login, error)
	BeginEnrollment(ctx context.Context, name string) (ipc.Enrollment, error)
	FinishEnrollment(ctx context.Context, id string, f ipc.EnrollmentFinish) (ipc.EnrollmentLine, error)
}

// Defaults and limits.
const (
	// SessionTTL is how long a sign-in lasts.
	SessionTTL = 12 * time.Hour
	// MaxSessions bounds the sign-ins held; the oldest is dropped.
	MaxSessions = 64
	// CookieName is the cookie over plain HTTP (the local stack);
	// SecureCookieName over HTTPS.
	CookieName       = "breakglass_session"
	SecureCookieName = "__Host-breakglass_session"
	// burst and refill are the rate limit shared by the sign-in and
	// enrollment routes: burst requests at once, then one per refill.
	burst  = 20
	refill = 3 * time.Second
	// maxBody bounds a request body (an attestation object, base64url).
	maxBody = 16 << 10
	// keyholderTimeout bounds one keyholder call.
	keyholderTimeout = 10 * time.Second
)

// Codes of this package's error answers, beside package wire's.
const (
	CodeRateLimited wire.Code = "rate_limited"
	CodeEnrollment  wire.Code = "enrollment_refused"
	CodePresenceOff wire.Code = "presence_off"
)

// Config configures a Service. Keyholder is required; the other zero
// values are the safe defaults.
type Config struct {
	Keyholder Keyholder
	// Logger gets one line per sign-in, sign-out and enrollment.
	Logger hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is passkey sign-in and the enrollment relay.
type Service struct {
	kh          Keyholder
	log         hclog.Logger
	now         func() time.Time
	crossOrigin *http.CrossOriginProtection

	// mu protects the following.
	mu       sync.Mutex
	sessions map[[32]byte]session
	tokens   float64
	lastFill time.Time
}

type session struct {
	operator string
	expires  time.Time
	created  time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Keyholder == nil {
		return nil, errors.New("signin: Config.Keyholder is required")
	}
	s := &Service{kh: cfg.Keyholder, log: cfg.Logger, now: cfg.Now, crossOrigin: http.NewCrossOriginProtection(),
		sessions: map[[32]byte]session{}, tokens: burst}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.lastFill = s.now()
	return s, nil
}

// Routes are the routes, which answer before sign-in (open routes), for
// package api to mount:
//
//	POST /api/login/options   request options for a login challenge
//	POST /api/login           {"presence":…} → the cookie
//	POST /api/logout          ends the sign-in
//	POST /api/enroll/options  {"name"} → creation options
//	POST /api/enroll          {"enrollment_id","code",…} → the operators-file line
func (s *Service) Routes() []wire.Route {
	return []wire.Route{
		{Method: http.MethodPost, Path: "/api/login/options", Open: s.guard(s.loginOptions)},
		{Method: http.MethodPost, Path: "/api/login", Open: s.guard(s.login)},
		{Method: http.MethodPost, Path: "/api/logout", Open: s.guard(s.logout)},
		{Method: http.MethodPost, Path: "/api/enroll/options", Open: s.guard(s.enrollOptions)},
		{Method: http.MethodPost, Path: "/api/enroll", Open: s.guard(s.enroll)},
	}
}

// errNoOperator is a keyholder answer to a sign-in that names nobody: never
// a sign-in (fail closed).
var errNoOperator = errors.New("the keyholder's sign-in answer names no operator")

// Operator returns the operator a request's sign-in cookie names, if it is
// a live one.
func (s *Service) Operator(r *http.Request) (string, bool) {
	for _, name := range []string{SecureCookieName, CookieName} {
		c, err := r.Cookie(name)
		if err != nil || c.Value == "" {
			continue
		}
		key := sha256.Sum256([]byte(c.Value))
		s.mu.Lock()
		sess, ok := s.sessions[key]
		if ok && !s.now().Before(sess.expires) {
			delete(s.sessions, key)
			ok = false
		}
		s.mu.Unlock()
		if ok && sess.operator != "" {
			return sess.operator, true
		}
	}
	return "", false
}

// guard refuses cross-origin requests and rate-limits the routes.
func (s *Service) guard(h http.HandlerFunc) http.HandlerFunc {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.crossOrigin.Check(r); err != nil {
			writeError(w, http.StatusForbidden, wire.CodeCrossOrigin, "cross-origin request refused", "")
			return
		}
		if !s.allow() {
			w.Header().Set("Retry-After", "3")
			writeError(w, http.StatusTooManyRequests, CodeRateLimited, "too many sign-in or enrollment requests; try again in a few seconds", "")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), keyholderTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	})
}

// allow takes one token of the shared bucket.
func (s *Service) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.tokens += float64(now.Sub(s.lastFill)) / float64(refill)
	s.lastFill = now
	if s.tokens > burst {
		s.tokens = burst
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

func (s *Service) loginOptions(w http.ResponseWriter, r *http.Request) {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), "")
		return
	}
	c, err := s.kh.Challenge(r.Context(), ipc.ChallengeRequest{Purpose: ipc.PurposeLogin})
	if err != nil {
		s.keyholderError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, power.RequestOptionsOf(c))
}

// LoginRequest is the body of POST /api/login.
type LoginRequest struct {
	Presence *ipc.Presence `json:"presence"`
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if err := decode(w, r, &req, false); err != nil || req.Presence == nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, `body must be {"presence":{…}}`, "")
		return
	}
	l, err := s.kh.Login(r.Context(), *req.Presence)
	if err == nil && l.Operator == "" {
		err = errNoOperator
	}
	if err != nil {
		s.log.Warn("passkey sign-in refused", "error", err)
		s.keyholderError(w, err)
		return
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeError, "no randomness for a session", "")
		return
	}
	value := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	s.mu.Lock()
	s.sessions[sha256.Sum256([]byte(value))] = session{operator: l.Operator, created: now, expires: now.Add(SessionTTL)}
	s.pruneLocked(now)
	s.mu.Unlock()
	http.SetCookie(w, cookie(r, value, int(SessionTTL/time.Second)))
	s.log.Info("signed in with a passkey", "operator", l.Operator)
	wire.WriteJSON(w, http.StatusOK, l)
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{SecureCookieName, CookieName} {
		if c, err := r.Cookie(name); err == nil {
			s.mu.Lock()
			delete(s.sessions, sha256.Sum256([]byte(c.Value)))
			s.mu.Unlock()
		}
	}
	http.SetCookie(w, cookie(r, "", -1))
	wire.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// pruneLocked drops expired sign-ins and, beyond MaxSessions, the oldest.
func (s *Service) pruneLocked(now time.Time) {
	for k, v := range s.sessions {
		if !now.Before(v.expires) {
			delete(s.sessions, k)
		}
	}
	for len(s.sessions) > MaxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.sessions {
			if at.IsZero() || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		delete(s.sessions, oldest)
	}
}

// cookie is the sign-in cookie: HttpOnly, SameSite=Strict, path /; over
// HTTPS (the browser's Origin says so, or the connection) `__Host-` and
// Secure.
func cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	secure := r.TLS != nil || strings.HasPrefix(r.Header.Get("Origin"), "https://")
	c := &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if secure {
		c.Name, c.Secure = SecureCookieName, true
	}
	return c
}

// EnrollOptionsRequest is the body of POST /api/enroll/options.
type EnrollOptionsRequest struct {
	Name string `json:"name"`
}

// CreationOptions is the answer of POST /api/enroll/options: what the
// browser passes to navigator.credentials.create (binary fields
// base64url).
type CreationOptions struct {
	EnrollmentID string         `json:"enrollment_id"`
	PublicKey    CreationParams `json:"publicKey"`
}

// CreationParams is PublicKeyCredentialCreationOptions.
type CreationParams struct {
	Challenge              string       `json:"challenge"`
	RP                     Entity       `json:"rp"`
	User                   User         `json:"user"`
	PubKeyCredParams       []CredParam  `json:"pubKeyCredParams"`
	AuthenticatorSelection AuthSelector `json:"authenticatorSelection"`
	Attestation            string       `json:"attestation"`
	Timeout                int          `json:"timeout"`
}

// Entity is the relying party.
type Entity struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// User is the new credential's user.
type User struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

// CredParam is one accepted algorithm.
type CredParam struct {
	Type string `json:"type"`
	Alg  int    `json:"alg"`
}

// AuthSelector asks for a passkey with user verification.
type AuthSelector struct {
	ResidentKey      string `json:"residentKey"`
	UserVerification string `json:"userVerification"`
}

func (s *Service) enrollOptions(w http.ResponseWriter, r *http.Request) {
	var req EnrollOptionsRequest
	if err := decode(w, r, &req, false); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), "")
		return
	}
	e, err := s.kh.BeginEnrollment(r.Context(), req.Name)
	if err != nil {
		s.keyholderError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, CreationOptions{EnrollmentID: e.EnrollmentID, PublicKey: CreationParams{
		Challenge: e.Challenge,
		RP:        Entity{ID: e.RPID, Name: "breakglass"},
		User:      User{ID: e.UserID, Name: req.Name, DisplayName: req.Name},
		PubKeyCredParams: []CredParam{
			{Type: "public-key", Alg: -7}, {Type: "public-key", Alg: -8}, {Type: "public-key", Alg: -257},
		},
		AuthenticatorSelection: AuthSelector{ResidentKey: "preferred", UserVerification: "required"},
		Attestation:            "none",
		Timeout:                120000,
	}})
}

// EnrollRequest is the body of POST /api/enroll.
type EnrollRequest struct {
	EnrollmentID      string `json:"enrollment_id"`
	Code              string `json:"code"`
	CredentialID      string `json:"credential_id"`
	ClientDataJSON    string `json:"client_data_json"`
	AttestationObject string `json:"attestation_object"`
}

func (s *Service) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if err := decode(w, r, &req, false); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), "")
		return
	}
	line, err := s.kh.FinishEnrollment(r.Context(), req.EnrollmentID, ipc.EnrollmentFinish{
		Code: req.Code, CredentialID: req.CredentialID, ClientDataJSON: req.ClientDataJSON, AttestationObject: req.AttestationObject,
	})
	if err != nil {
		s.log.Warn("enrollment refused", "error", err)
		s.keyholderError(w, err)
		return
	}
	s.log.Info("passkey enrolled", "appended", line.Appended)
	wire.WriteJSON(w, http.StatusCreated, line)
}

// keyholderError relays a keyholder refusal: its status, message and
// reason; an unreachable keyholder is 503.
func (s *Service) keyholderError(w http.ResponseWriter, err error) {
	var se *ipc.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusConflict:
		writeError(w, http.StatusConflict, CodePresenceOff, se.Message, se.Reason)
	case errors.As(err, &se) && se.Status == http.StatusForbidden:
		writeError(w, http.StatusForbidden, wire.CodePresence, se.Message, se.Reason)
	case errors.As(err, &se) && se.Status >= 400 && se.Status < 500:
		writeError(w, se.Status, wire.CodeBadRequest, se.Message, se.Reason)
	case errors.Is(err, ipc.ErrUnreachable):
		writeError(w, http.StatusServiceUnavailable, wire.CodeKeyholderDown, "keyholder unreachable: sign-in and enrollment need it", "")
	default:
		writeError(w, http.StatusBadGateway, wire.CodeError, "keyholder call failed", "")
	}
}

// decode reads a JSON body of at most maxBody bytes, strictly.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("body unreadable or larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return errors.New("body required")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if dec.More() {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

func writeError(w http.ResponseWriter, status int, code wire.Code, msg, reason string) {
	wire.WriteError(w, &wire.Error{Status: status, Code: code, Message: msg, Reason: reason})
}
