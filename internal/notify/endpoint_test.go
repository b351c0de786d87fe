package notify

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateEndpoint(t *testing.T) {
	tests := []struct {
		name, url string
		ok        bool
	}{
		{"fcm", "https://fcm.googleapis.com/fcm/send/abc:def", true},
		{"mozilla", "https://updates.push.services.mozilla.com/wpush/v2/gAAA", true},
		{"apple", "https://web.push.apple.com/QGuQ", true},
		{"port-443", "https://push.example.com:443/x", true},
		{"loopback-http", "http://127.0.0.1:4567/push/x", true},
		{"loopback6-http", "http://[::1]:4567/push/x", true},
		{"http-public", "http://fcm.googleapis.com/fcm/send/x", false},
		{"http-localhost-name", "http://localhost:4567/push/x", false},
		{"http-private", "http://10.0.0.5/push", false},
		{"https-ip", "https://142.250.1.1/push", false},
		{"https-ip6", "https://[2606:4700::1111]/push", false},
		{"https-private-ip", "https://192.168.1.127/push", false},
		{"https-loopback-ip", "https://127.0.0.1/push", false},
		{"localhost", "https://localhost/push", false},
		{"dotless", "https://intranet/push", false},
		{"internal", "https://kube-dns.kube-system.svc.cluster.internal/x", false},
		{"local", "https://printer.local/x", false},
		{"sub-localhost", "https://a.localhost/x", false},
		{"other-port", "https://push.example.com:8443/x", false},
		{"userinfo", "https://u:p@push.example.com/x", false},
		{"fragment", "https://push.example.com/x#y", false},
		{"ftp", "ftp://push.example.com/x", false},
		{"javascript", "javascript:alert(1)", false},
		{"empty", "", false},
		{"no-host", "https:///x", false},
		{"too-long", "https://push.example.com/" + string(make([]byte, MaxEndpointBytes)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ValidateEndpoint(tc.url)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrBadEndpoint)
			}
		})
	}
}

// TestDialRefusesNonPublicAddresses: a public-looking name that resolves
// into the cluster or the host is not connected to.
func TestDialRefusesNonPublicAddresses(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"142.250.1.1:443", true},
		{"[2606:4700::1111]:443", true},
		{"127.0.0.1:443", false},
		{"10.0.10.10:443", false},
		{"192.168.1.127:443", false},
		{"172.16.0.1:443", false},
		{"100.64.0.1:443", false},
		{"169.254.169.254:443", false},
		{"0.0.0.0:443", false},
		{"[::1]:443", false},
		{"[fd00::1]:443", false},
		{"[fe80::1]:443", false},
		{"[::ffff:10.0.0.1]:443", false},
		{"224.0.0.1:443", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := refuseNonPublic("tcp", tc.addr, nil)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, errPrivateAddr)
			}
		})
	}
	assert.False(t, publicAddr(netip.Addr{}))
}

func TestCheckKeys(t *testing.T) {
	good := Keys{
		P256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
		Auth:   "tBHItJI5svbpez7KI4CCXg",
	}
	assert.NoError(t, checkKeys(good))
	for name, k := range map[string]Keys{
		"short-auth":   {P256dh: good.P256dh, Auth: "tBHItJI5svbpez7K"},
		"not-b64":      {P256dh: "!!!", Auth: good.Auth},
		"off-curve":    {P256dh: "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Auth: good.Auth},
		"empty":        {},
		"compressed":   {P256dh: "A9cRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQt", Auth: good.Auth},
		"padded-auth+": {P256dh: good.P256dh, Auth: "tBHItJI5svbpez7KI4CCXgAA"},
	} {
		t.Run(name, func(t *testing.T) { assert.ErrorIs(t, checkKeys(k), ErrBadKeys) })
	}
}

// TestPublicClientNeverConnectsInside: the client that sends to https
// endpoints refuses to connect to a loopback address, whatever the URL
// says (here a test server the connection would otherwise reach).
func TestPublicClientNeverConnectsInside(t *testing.T) {
	var reached atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Store(true) }))
	defer srv.Close()
	resp, err := newPublicClient().Get(srv.URL)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, errPrivateAddr)
	assert.False(t, reached.Load())
}
