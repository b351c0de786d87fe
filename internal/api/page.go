package api

import (
	"io/fs"
	"net/http"
	"strings"
)

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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
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
		files.ServeHTTP(w, r)
	})
}
