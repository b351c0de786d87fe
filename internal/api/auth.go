package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"

	"breakglass/internal/api/wire"
)

// IdentityHeader is the header the SSO edge proxy sets to the signed-in
// user's name.
const IdentityHeader = "X-Authentik-Username"

// BearerActor is the actor name of requests authenticated by the bearer
// token.
const BearerActor = "api-token"

// maxIdentity bounds the identity header's value.
const maxIdentity = 256

// Reasons of breakglass_auth_failures_total.
const (
	reasonMissing       = "missing"
	reasonBadToken      = "bad_token"
	reasonNoToken       = "bearer_disabled"
	reasonRepeated      = "repeated_header"
	reasonEmpty         = "empty_header"
	reasonInvalid       = "invalid_header"
	reasonUntrustedPeer = "untrusted_peer"
	reasonLocalPeer     = "local_peer"
	reasonCrossOrigin   = "cross_origin"
	reasonHeaderOff     = "header_off"
)

// authReasons lists every reason, so each series exists from the start.
var authReasons = []string{reasonMissing, reasonBadToken, reasonNoToken, reasonRepeated, reasonEmpty, reasonInvalid, reasonUntrustedPeer, reasonLocalPeer, reasonCrossOrigin, reasonHeaderOff}

// principal is who made a request. ViaHeader is set when the identity
// header authenticated it: it came from a browser through the proxy, so
// state changes must be same-origin.
type principal = wire.Principal

type principalKey struct{}

// Identity returns the authenticated operator's name for r, or "" when r did
// not pass the authentication middleware.
func Identity(r *http.Request) string {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p.Name
}

// withPrincipal serves an operator route of another package with the
// principal requireAuth found.
func withPrincipal(h wire.OperatorFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(principalKey{}).(principal)
		if !ok || p.Name == "" {
			fail(w, http.StatusUnauthorized, wire.CodeUnauthorized, "not authenticated")
			return
		}
		h(w, r, p)
	})
}

// authenticator decides who a request is from (docs/web.md, Authentication).
type authenticator struct {
	// tokenDigest is the SHA-256 of the bearer token; nil when bearer
	// auth is off.
	tokenDigest []byte
	// trusted lists the proxies the identity header is believed from;
	// empty means none: the header is refused from every peer.
	trusted []netip.Prefix
	// signIn recognises a passkey sign-in's cookie; nil means none.
	signIn SignIn
}

// authenticate returns the request's principal, or the reason it has none.
func (a *authenticator) authenticate(r *http.Request) (principal, string) {
	if auth := r.Header.Values("Authorization"); len(auth) > 0 {
		if len(auth) > 1 {
			return principal{}, reasonRepeated
		}
		scheme, token, _ := strings.Cut(strings.TrimSpace(auth[0]), " ")
		if strings.EqualFold(scheme, "Bearer") {
			if a.tokenDigest == nil {
				return principal{}, reasonNoToken
			}
			// Compare digests so neither the length nor a prefix of
			// the token leaks through timing.
			got := sha256.Sum256([]byte(token))
			if subtle.ConstantTimeCompare(got[:], a.tokenDigest) != 1 {
				return principal{}, reasonBadToken
			}
			return principal{Name: BearerActor}, ""
		}
	}
	names := r.Header.Values(IdentityHeader)
	switch {
	case len(names) == 0:
		// A passkey sign-in, made with the keyholder's check, works
		// with the SSO down; like the header it comes from a browser,
		// so state changes must be same-origin.
		if a.signIn != nil {
			if name, ok := a.signIn.Operator(r); ok && name != "" {
				return principal{Name: name, ViaHeader: true}, ""
			}
		}
		return principal{}, reasonMissing
	case len(names) > 1:
		return principal{}, reasonRepeated
	}
	name := strings.TrimSpace(names[0])
	if name == "" {
		return principal{}, reasonEmpty
	}
	if len(name) > maxIdentity || !utf8.ValidString(name) || strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return principal{}, reasonInvalid
	}
	return a.trustPeer(r, name)
}

// trustPeer decides whether the identity header is believed from r's peer.
//
// With no trusted proxies the header is off: it is refused from every peer
// (fail closed), since a proxy that passes a client's own copy through would
// otherwise make anyone who reaches the web the operator.
//
// The agent runs claude's Bash tool on this very host, so a connection from
// this host must never pass as the proxy by default: otherwise the agent
// could `curl` the web with the header, approve its own reset and act as the
// operator. A peer on this host is either on loopback, or connects from the
// address it connects to (the pod's own IP). The first is believed only when
// BREAKGLASS_TRUSTED_PROXIES names it explicitly (a proxy in the same pod,
// or the local stack's edge); the second never is.
func (a *authenticator) trustPeer(r *http.Request, name string) (principal, string) {
	if len(a.trusted) == 0 {
		return principal{}, reasonHeaderOff
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return principal{}, reasonUntrustedPeer
	}
	peer := ap.Addr().Unmap()
	if local, ok := localIP(r); ok && peer == local && !peer.IsLoopback() {
		return principal{}, reasonLocalPeer
	}
	for _, p := range a.trusted {
		if p.Contains(peer) {
			return principal{Name: name, ViaHeader: true}, ""
		}
	}
	return principal{}, reasonUntrustedPeer
}

// localIP is the address r arrived on.
func localIP(r *http.Request) (netip.Addr, bool) {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// requireAuth wraps the operator's routes: a request carrying a turn token
// gets 403 (the agent has its own endpoint), unauthenticated requests get
// 401 (JSON under /api/, a plain page elsewhere), cross-origin state changes
// authenticated by the header get 403.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Values(wire.TokenHeader)) > 0 {
			// The agent has its own endpoint: a turn token here is a
			// request dressed up as the operator's (to run a verb, or to
			// approve its own).
			s.log.Warn("turn token on an operator route refused", "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr)
			fail(w, http.StatusForbidden, wire.CodeForbidden, "a turn token is not accepted on the operator's routes")
			return
		}
		p, reason := s.auth.authenticate(r)
		if reason != "" {
			s.authFailures.WithLabelValues(reason).Inc()
			s.log.Info("request refused", "reason", reason, "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr)
			if strings.HasPrefix(r.URL.Path, "/api/") {
				fail(w, http.StatusUnauthorized, wire.CodeUnauthorized, "not authenticated")
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("401 Unauthorized: open breakglass through the sign-in proxy.\n"))
			return
		}
		if p.ViaHeader {
			if err := s.crossOrigin.Check(r); err != nil {
				s.authFailures.WithLabelValues(reasonCrossOrigin).Inc()
				s.log.Warn("cross-origin request refused", "actor", p.Name, "method", r.Method, "path", r.URL.Path,
					"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
				fail(w, http.StatusForbidden, wire.CodeCrossOrigin, "cross-origin request refused")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
