package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxEndpointBytes bounds a push endpoint URL.
const MaxEndpointBytes = 2048

// ErrBadEndpoint is wrapped by every refusal of a push endpoint.
var ErrBadEndpoint = errors.New("bad push endpoint")

// privateSuffixes are host names that never name a public push service.
var privateSuffixes = []string{".localhost", ".local", ".internal", ".home.arpa", ".lan", ".localdomain"}

// ValidateEndpoint checks a push endpoint (docs/notifications.md): https to
// a host name (not an IP literal, not a local-only name such as localhost
// or *.internal), or http to a loopback address (127.0.0.1, [::1]) for
// tests. No user info, no fragment. It returns the parsed URL.
func ValidateEndpoint(raw string) (*url.URL, error) {
	if raw == "" || len(raw) > MaxEndpointBytes {
		return nil, fmt.Errorf("%w: empty or over %d bytes", ErrBadEndpoint, MaxEndpointBytes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not a URL", ErrBadEndpoint)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("%w: user info, fragment or no host", ErrBadEndpoint)
	}
	host := u.Hostname()
	switch u.Scheme {
	case "http":
		if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
			return u, nil
		}
		return nil, fmt.Errorf("%w: http only to a loopback address", ErrBadEndpoint)
	case "https":
	default:
		return nil, fmt.Errorf("%w: scheme must be https", ErrBadEndpoint)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil, fmt.Errorf("%w: an IP address, not a host name", ErrBadEndpoint)
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || !strings.Contains(h, ".") {
		return nil, fmt.Errorf("%w: not a public host name", ErrBadEndpoint)
	}
	for _, s := range privateSuffixes {
		if strings.HasSuffix(h, s) {
			return nil, fmt.Errorf("%w: not a public host name", ErrBadEndpoint)
		}
	}
	if p := u.Port(); p != "" && p != "443" {
		return nil, fmt.Errorf("%w: port must be 443", ErrBadEndpoint)
	}
	return u, nil
}

// cgnat is 100.64.0.0/10, shared address space that netip does not call
// private.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether a is an address a push service may have.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

// errPrivateAddr is a dial refused because a host name resolved to a
// private, loopback or link-local address.
var errPrivateAddr = errors.New("push endpoint resolves to a non-public address")

// refuseNonPublic is a net.Dialer Control: it lets the connection go on only
// to a public address, so a host name that resolves into the cluster (or
// is rebound there) is never reached.
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !publicAddr(ap.Addr()) {
		return errPrivateAddr
	}
	return nil
}

// noRedirect keeps the client on the endpoint it was given.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newPublicClient is the client for https endpoints: public addresses only,
// no proxy, no redirects.
func newPublicClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: refuseNonPublic}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		CheckRedirect: noRedirect,
	}
}

// newLoopbackClient is the client for http endpoints on a loopback address
// (ValidateEndpoint allows nothing else over http).
func newLoopbackClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil || !ap.Addr().IsLoopback() {
					return nil, errPrivateAddr
				}
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConnsPerHost: 2,
		},
		CheckRedirect: noRedirect,
	}
}
