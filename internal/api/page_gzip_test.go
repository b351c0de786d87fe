package api

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPageGzip: text files go out gzip-compressed to clients that accept it
// (a third of the bytes on a slow phone link), identical once decompressed;
// others get them as they are. Every page response carries the CSP.
func TestPageGzip(t *testing.T) {
	js := strings.Repeat("console.log('breakglass');\n", 200)
	ui := fstest.MapFS{
		"index.html":          {Data: []byte("<!doctype html><title>breakglass</title>" + strings.Repeat(" ", 2000))},
		"assets/index-abc.js": {Data: []byte(js)},
		"icon.png":            {Data: []byte("\x89PNG\r\n\x1a\nnot really")},
	}
	e := start(t, opts{api: Config{UI: ui}})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(t *testing.T, path, accept string) (*http.Response, []byte) {
		t.Helper()
		r, err := http.NewRequest(http.MethodGet, e.url+path, nil)
		require.NoError(t, err)
		r.Header.Set(IdentityHeader, "alice")
		if accept != "" {
			r.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	gunzip := func(t *testing.T, b []byte) string {
		t.Helper()
		zr, err := gzip.NewReader(strings.NewReader(string(b)))
		require.NoError(t, err)
		out, err := io.ReadAll(zr)
		require.NoError(t, err)
		return string(out)
	}

	tests := []struct {
		name, path, accept string
		gzipped            bool
		want               string
		ctype              string
	}{
		{"index-gzip", "/", "gzip, deflate, br", true, string(ui["index.html"].Data), "text/html; charset=utf-8"},
		{"asset-gzip", "/assets/index-abc.js", "br;q=1.0, gzip;q=0.8", true, js, "text/javascript; charset=utf-8"},
		{"asset-identity", "/assets/index-abc.js", "", false, js, "text/javascript; charset=utf-8"},
		{"gzip-refused", "/assets/index-abc.js", "gzip;q=0", false, js, "text/javascript; charset=utf-8"},
		{"binary-never", "/icon.png", "gzip", false, string(ui["icon.png"].Data), "image/png"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.path, tc.accept)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, tc.ctype, resp.Header.Get("Content-Type"))
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
			if tc.gzipped {
				assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
				assert.Less(t, len(body), len(tc.want)/2)
				assert.Equal(t, tc.want, gunzip(t, body))
			} else {
				assert.Empty(t, resp.Header.Get("Content-Encoding"))
				assert.Equal(t, tc.want, string(body))
			}
		})
	}
}
