package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/api/wire"
	"breakglass/internal/sandbox"
	"breakglass/internal/session"
)

// Keyholder is the keyholder's socket API as the web's probes and metrics
// use it.
type Keyholder interface {
	// Healthz returns nil when the keyholder answers /v1/healthz.
	Healthz(ctx context.Context) error
	// Metrics returns the keyholder's /metrics, Prometheus text format.
	Metrics(ctx context.Context) ([]byte, error)
}

// PresenceReporter is a Keyholder that also says whether it requires
// operator presence ("required" or "off"), for /readyz.
type PresenceReporter interface {
	Presence(ctx context.Context) (string, error)
}

// SignIn recognises a passkey sign-in's cookie (package signin).
type SignIn interface {
	Operator(r *http.Request) (string, bool)
}

// Defaults for a zero Config.
const (
	DefaultKeepAlive    = 20 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Config configures a Server. Sessions and Keyholder are required; every
// other zero value is the safe default.
type Config struct {
	// Sessions owns the sessions.
	Sessions *session.Manager
	// Keyholder answers /readyz and feeds /metrics.
	Keyholder Keyholder
	// BearerToken enables `Authorization: Bearer <token>` when non-empty;
	// empty means the bearer is never accepted.
	BearerToken string
	// TrustedProxies are the peers the identity header is believed from;
	// empty (the safe default) means none: the header is refused from
	// every peer, and only the bearer token or a sign-in lets anyone in
	// (the caller should say so at start). A loopback peer is believed only when listed here; a peer connecting
	// from the address it connects to (this pod) never is.
	TrustedProxies []netip.Prefix
	// KeepAlive is the interval of `: keepalive` on idle streams; zero
	// means DefaultKeepAlive.
	KeepAlive time.Duration
	// WriteTimeout bounds each write of the stream and of the other
	// responses' bodies; zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// UI is the built page (package ui); nil serves a placeholder.
	UI fs.FS
	// SignIn, when set, authenticates requests by a passkey sign-in's
	// cookie (state changes then must be same-origin, as with the header).
	SignIn SignIn
	// Routes are the routes of the other packages (the power verbs, the
	// push subscriptions, …), mounted with the api's own: an Operator
	// route behind the authentication and same-origin check, called with
	// the principal; an Open one as it is (it authenticates on its own).
	Routes []wire.Route
	// Sandbox, when set, is what the agent's sandbox gets on this kernel:
	// /readyz says it (a sandbox that is partial or missing does not make
	// the web unready, but it is never silent).
	Sandbox *sandbox.Status
	// Logger gets refused requests and stream problems; nil means none.
	Logger hclog.Logger
	// Registerer receives the api's collectors; Gatherer is what /metrics
	// serves (with the keyholder's). Nil means a private registry for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// Server serves the operator's listener (Handler) and the metrics listener
// (MetricsHandler).
type Server struct {
	sessions     *session.Manager
	kh           Keyholder
	auth         authenticator
	crossOrigin  *http.CrossOriginProtection
	keepAlive    time.Duration
	writeTimeout time.Duration
	ui           fs.FS
	routes       []wire.Route
	log          hclog.Logger
	gatherer     prometheus.Gatherer
	authFailures *prometheus.CounterVec
	// signIn is set when passkey sign-in is on.
	signIn  bool
	sandbox *sandbox.Status
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("api: Config.Sessions is required")
	}
	if cfg.Keyholder == nil {
		return nil, errors.New("api: Config.Keyholder is required")
	}
	s := &Server{
		sessions:     cfg.Sessions,
		kh:           cfg.Keyholder,
		auth:         authenticator{trusted: cfg.TrustedProxies, signIn: cfg.SignIn},
		signIn:       cfg.SignIn != nil,
		crossOrigin:  http.NewCrossOriginProtection(),
		sandbox:      cfg.Sandbox,
		keepAlive:    cfg.KeepAlive,
		writeTimeout: cfg.WriteTimeout,
		ui:           cfg.UI,
		routes:       cfg.Routes,
		log:          cfg.Logger,
		gatherer:     cfg.Gatherer,
	}
	for _, rt := range cfg.Routes {
		if (rt.Operator == nil) == (rt.Open == nil) || rt.Method == "" || rt.Path == "" {
			return nil, fmt.Errorf("api: route %s %s: a method, a path and exactly one of Operator and Open", rt.Method, rt.Path)
		}
	}
	if cfg.BearerToken != "" {
		d := sha256.Sum256([]byte(cfg.BearerToken))
		s.auth.tokenDigest = d[:]
	}
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("api: invalid trusted proxy prefix %v", p)
		}
	}
	switch {
	case s.keepAlive == 0:
		s.keepAlive = DefaultKeepAlive
	case s.keepAlive < 0:
		return nil, fmt.Errorf("api: keepalive %v: must be positive", s.keepAlive)
	}
	switch {
	case s.writeTimeout == 0:
		s.writeTimeout = DefaultWriteTimeout
	case s.writeTimeout < 0:
		return nil, fmt.Errorf("api: write timeout %v: must be positive", s.writeTimeout)
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	reg := cfg.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gatherer = r, r
	}
	if s.gatherer == nil {
		return nil, errors.New("api: Config.Gatherer is required with a Registerer")
	}
	s.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakglass_auth_failures_total",
		Help: "Requests refused by authentication or the same-origin check, by reason.",
	}, []string{"reason"})
	if err := reg.Register(s.authFailures); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	for _, r := range authReasons {
		s.authFailures.WithLabelValues(r)
	}
	return s, nil
}

// Handler returns the operator's listener's handler: probes, API, stream,
// page. It never serves /metrics.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	// Route on the path as sent: `..` and `%2e%2e` reach the id check as
	// they are (and get 404), never a redirect or a cleaned path.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "not found")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "method not allowed")
	})

	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet, http.MethodHead)

	open := r.NewRoute().Subrouter()
	op := r.NewRoute().Subrouter()
	op.Use(s.requireAuth)
	op.HandleFunc("/api/sessions", s.createSession).Methods(http.MethodPost)
	op.HandleFunc("/api/sessions", s.listSessions).Methods(http.MethodGet)
	op.HandleFunc("/api/sessions/{id}", s.getSession).Methods(http.MethodGet)
	op.HandleFunc("/api/sessions/{id}/stream", s.stream).Methods(http.MethodGet)
	op.HandleFunc("/api/sessions/{id}/prompt", s.prompt).Methods(http.MethodPost)
	op.HandleFunc("/api/sessions/{id}/cancel", s.cancel).Methods(http.MethodPost)
	op.HandleFunc("/api/sessions/{id}/permissions/{request_id}", s.answerPermission).Methods(http.MethodPost)
	op.HandleFunc("/api/sessions/{id}", s.patchSession).Methods(http.MethodPatch)
	op.HandleFunc("/api/sessions/{id}", s.archiveSession).Methods(http.MethodDelete)
	op.HandleFunc("/api/sessions/{id}/restore", s.restoreSession).Methods(http.MethodPost)
	op.HandleFunc("/api/sessions/{id}/export", s.exportSession).Methods(http.MethodGet)
	// The other packages' routes: the power verbs (/api/vm,
	// /api/vm/{verb}, approvals), the agent's endpoint, …
	for _, rt := range s.routes {
		switch {
		case rt.Operator != nil:
			op.Handle(rt.Path, withPrincipal(rt.Operator)).Methods(rt.Method)
		case rt.Open != nil:
			open.Handle(rt.Path, rt.Open).Methods(rt.Method)
		}
	}
	op.PathPrefix("/api/").HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "not found")
	})
	// With passkey sign-in the page itself (static code, no data) is
	// served before sign-in, so the sign-in page can show when the SSO is
	// down; everything it shows comes through /api, behind the check.
	if s.signIn {
		notAPI := func(r *http.Request, _ *mux.RouteMatch) bool { return !strings.HasPrefix(r.URL.Path, "/api/") }
		open.PathPrefix("/").MatcherFunc(notAPI).Handler(s.page()).Methods(http.MethodGet, http.MethodHead)
	} else {
		op.PathPrefix("/").Handler(s.page()).Methods(http.MethodGet, http.MethodHead)
	}
	return r
}

// OpenHandler serves only routes (open ones: they authenticate on their
// own), for a listener of their own such as the agent's `pve` socket. Any
// other request gets the same JSON 404 or 405 as the operator's listener.
func OpenHandler(routes []wire.Route) http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "not found")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "method not allowed")
	})
	for _, rt := range routes {
		if rt.Open != nil {
			r.Handle(rt.Path, rt.Open).Methods(rt.Method)
		}
	}
	return r
}

// healthz answers while the process serves.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	wire.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// readyz answers 200 when the keyholder does, else 503 with why; either
// way with the agent sandbox's status when there is one.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	body := map[string]any{"ok": true}
	if s.sandbox != nil {
		body["sandbox"] = s.sandbox
	}
	if err := s.kh.Healthz(ctx); err != nil {
		s.log.Warn("not ready", "error", err)
		body["ok"] = false
		body["error"] = "keyholder not answering: " + err.Error()
		body["code"] = wire.CodeKeyholderDown
		wire.WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	if pr, ok := s.kh.(PresenceReporter); ok {
		// Whether a passkey guards the mutating verbs is part of being
		// ready to be trusted: "off" is said here, never silently.
		mode, err := pr.Presence(ctx)
		if err != nil {
			mode = "unknown"
		}
		body["presence"] = mode
		if mode == "off" {
			body["warning"] = "operator presence is off: mutating verbs run without the operator's passkey"
		}
	}
	wire.WriteJSON(w, http.StatusOK, body)
}

// fail answers with status, code and msg: every error body of the web has
// a code (package wire).
func fail(w http.ResponseWriter, status int, code wire.Code, msg string) {
	wire.WriteError(w, &wire.Error{Status: status, Code: code, Message: msg})
}
