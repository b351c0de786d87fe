package api

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// contentSecurityPolicy allows the page's own scripts, styles, images and
// requests and nothing else: even if model text ever reached the DOM as
// HTML, no inline or foreign script could run.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; manifest-src 'self'; object-src 'none'; " +
	"base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// placeholder is served when no built page is configured.
const placeholder = "<!doctype html><meta charset=utf-8><title>breakglass</title><p>breakglass: the page is not built into this binary.</p>\n"

// page serves the built UI: index.html never cached (it names the current
// assets), assets/ (content-hashed names) cached for a year.
func (s *Server) page() http.Handler {
	fsys := s.ui
	if fsys == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write([]byte(placeholder))
		})
	}
	files := http.FileServerFS(fsys)
	gz := &gzipped{fsys: fsys, m: map[string][]byte{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		p := strings.TrimPrefix(r.URL.Path, "/")
		switch {
		case strings.HasPrefix(p, "assets/"):
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		default:
			h.Set("Cache-Control", "no-cache")
		}
		if p != "" {
			if _, err := fs.Stat(fsys, p); err != nil {
				http.NotFound(w, r)
				return
			}
		}
		if gz.serve(w, r, p) {
			return
		}
		files.ServeHTTP(w, r)
	})
}

// gzipped serves the page's text files gzip-compressed to clients that
// accept it: the phone may be on a slow link, and the bundle shrinks to a
// third. The embedded files never change, so each is compressed once.
type gzipped struct {
	fsys fs.FS
	// mu protects the following.
	mu sync.Mutex
	m  map[string][]byte
}

// compressible lists the file types worth compressing.
var compressible = map[string]bool{".html": true, ".js": true, ".css": true, ".json": true, ".svg": true}

// serve writes name compressed and reports true, or reports false for the
// file server to answer (not accepted, not text, or a read error).
func (g *gzipped) serve(w http.ResponseWriter, r *http.Request, name string) bool {
	if name == "" {
		name = "index.html"
	}
	ext := path.Ext(name)
	if !compressible[ext] {
		return false
	}
	w.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r) {
		return false
	}
	body, err := g.get(name)
	if err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", mime.TypeByExtension(ext))
	h.Set("Content-Encoding", "gzip")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	return true
}

func (g *gzipped) get(name string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.m[name]; ok {
		return b, nil
	}
	raw, err := fs.ReadFile(g.fsys, name)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(raw)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	g.m[name] = buf.Bytes()
	return buf.Bytes(), nil
}

// acceptsGzip reports whether r's Accept-Encoding allows gzip (and does not
// refuse it with q=0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}
