package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAuthenticateRefusesControlCharacters calls the authenticator itself:
// Go's server already refuses some bytes in header values (\x7f, CR, LF)
// before auth runs, but a TAB, a NUL or another control character reaches
// it, and a proxy in front may pass them on. Each is refused as an invalid
// header, whoever the peer is.
func TestAuthenticateRefusesControlCharacters(t *testing.T) {
	a := &authenticator{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, c := range []struct{ name, value string }{
		{"tab-inside", "ali\tce"},
		{"nul", "alice\x00"},
		{"nul-inside", "al\x00ice"},
		{"soh", "\x01alice"},
		{"escape", "alice\x1b[2J"},
		{"unit-separator", "ali\x1fce"},
		{"del", "alice\x7f"},
		{"newline-inside", "alice\nbob"},
		{"cr-inside", "alice\rbob"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/sessions", nil)
			r.RemoteAddr = "10.1.2.3:40000"
			r.Header[IdentityHeader] = []string{c.value}
			p, reason := a.authenticate(r)
			assert.Equal(t, reasonInvalid, reason)
			assert.Empty(t, p.Name)
		})
	}
	// The same request with a clean name passes: the refusals above are
	// the characters' doing.
	r := httptest.NewRequest(http.MethodGet, "/api/sessions", nil)
	r.RemoteAddr = "10.1.2.3:40000"
	r.Header[IdentityHeader] = []string{"alice"}
	p, reason := a.authenticate(r)
	assert.Empty(t, reason)
	assert.Equal(t, "alice", p.Name)
}

// TestAuthenticateRefusesUnparsablePeer: a peer address that does not parse
// (a listener other than TCP, a wrapper that rewrote it) can never be
// believed to be the proxy, whatever the trusted proxies are.
func TestAuthenticateRefusesUnparsablePeer(t *testing.T) {
	for _, peer := range []string{"", "@", "not-an-address", "10.1.2.3", "[::1", "/run/web.sock"} {
		t.Run(peer, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/sessions", nil)
			r.RemoteAddr = peer
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 8080})))
			r.Header[IdentityHeader] = []string{"alice"}
			// Every address trusted: only the parse itself can refuse.
			a := &authenticator{trusted: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
			p, reason := a.authenticate(r)
			assert.NotEmpty(t, reason, "peer %q believed", peer)
			assert.Empty(t, p.Name)
		})
	}
}
