// Package edgetest holds the end-to-end tests of the edge, the trust
// boundary in front of the web (docs/security.md): Debian's nginx, run as a
// child of the test, in front of the real web binary. One nginx server is
// configured the way ingress-nginx configures authentik's forward auth
// (auth_request to an auth double that answers with X-authentik-username,
// then proxy_set_header from the answer, as deploy/k8s/components/authentik
// asks of it); another passes everything through to a web in its default
// configuration. The tests prove that a client's own x-authentik-username
// never reaches the web as the operator, only the auth answer's value does,
// and that the session event stream lives through the proxy with its
// default buffering.
//
// The package has no code outside its tests. They bind 127.0.0.1 only:
// nginx gets its listening sockets from the test (inherited file
// descriptors, as in nginx's own binary upgrade), so no port is guessed.
// nginx runs in the foreground with its own prefix and configuration in a
// temporary folder, and every process a test starts is stopped by it.
package edgetest
