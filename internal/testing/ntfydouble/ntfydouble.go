package ntfydouble

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Message is one publish to the topic.
type Message struct {
	Topic    string
	Body     string
	Title    string
	Click    string
	Tags     string
	Priority string
}

// Server is the ntfy double.
type Server struct {
	srv       *httptest.Server
	token     string
	published chan Message
	rejected  chan string

	// mu protects the following.
	mu   sync.Mutex
	code int
}

// New starts an ntfy double on 127.0.0.1:0 that requires token (empty: no
// token required).
func New(token string) *Server {
	s := &Server{token: token, published: make(chan Message, 256), rejected: make(chan string, 256)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops it.
func (s *Server) Close() { s.srv.Close() }

// TopicURL is the URL of a topic on it.
func (s *Server) TopicURL(topic string) string { return s.srv.URL + "/" + topic }

// Published receives every accepted message.
func (s *Server) Published() <-chan Message { return s.published }

// Rejected receives why each refused publish was refused.
func (s *Server) Rejected() <-chan string { return s.rejected }

// FailWith makes later publishes answer code (0: accept again).
func (s *Server) FailWith(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.code = code
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		s.rejected <- "method " + r.Method
		http.Error(w, "publish with POST or PUT", http.StatusMethodNotAllowed)
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		s.rejected <- "no or wrong token"
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	code := s.code
	s.mu.Unlock()
	if code != 0 {
		http.Error(w, http.StatusText(code), code)
		return
	}
	s.published <- Message{
		Topic:    strings.TrimPrefix(r.URL.Path, "/"),
		Body:     string(body),
		Title:    r.Header.Get("Title"),
		Click:    r.Header.Get("Click"),
		Tags:     r.Header.Get("Tags"),
		Priority: r.Header.Get("Priority"),
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"x","event":"message"}`)
}
