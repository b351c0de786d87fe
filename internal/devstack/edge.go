package devstack

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// IdentityHeader is the header the SSO edge proxy sets for the web.
const IdentityHeader = "X-Authentik-Username"

// edge stands in for the SSO proxy in front of the web: it drops whatever
// identity header the browser sent, sets its own, and streams responses
// unbuffered so SSE works.
func edge(web *url.URL, user string) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(web)
			r.Out.Host = r.In.Host
			r.Out.Header.Del(IdentityHeader)
			r.Out.Header.Set(IdentityHeader, user)
		},
		FlushInterval: -1,
	}
}

// edgeServer wraps the edge in a server with timeouts on everything but the
// response body, which for SSE lasts as long as the client stays.
func edgeServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
