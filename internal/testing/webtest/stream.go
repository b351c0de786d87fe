package webtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Event is one SSE event as a client saw it.
type Event struct {
	ID   int64
	Type string
	Data map[string]any
	Raw  string
}

// Stream is one attached SSE client.
type Stream struct {
	resp *http.Response
	br   *bufio.Reader
}

// Attach opens baseURL's stream of session id after event last, as the
// operator user (the identity header a trusted proxy sets).
func Attach(ctx context.Context, client *http.Client, baseURL, user, id string, last int64) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/sessions/"+id+"/stream", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Authentik-Username", user)
	req.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("attach: %s", resp.Status)
	}
	return &Stream{resp: resp, br: bufio.NewReader(resp.Body)}, nil
}

// Close ends the stream.
func (s *Stream) Close() { s.resp.Body.Close() }

// Next reads the next event, skipping comments (keepalives) and retry lines.
func (s *Stream) Next() (Event, error) {
	var e Event
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return e, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && e.Type != "":
			return e, nil
		case strings.HasPrefix(line, "id: "):
			e.ID, _ = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			e.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.Raw = line[6:]
			if err := json.Unmarshal([]byte(e.Raw), &e.Data); err != nil {
				return e, err
			}
		}
	}
}

// UntilDone reads events up to and including the next done.
func (s *Stream) UntilDone(t testing.TB) []Event {
	t.Helper()
	var got []Event
	for {
		e, err := s.Next()
		require.NoError(t, err, "stream ended after %v", Types(got))
		got = append(got, e)
		if e.Type == "done" {
			return got
		}
	}
}

// Types lists the events' types, in order.
func Types(es []Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

// Find returns the first event of type typ.
func Find(es []Event, typ string) (Event, bool) {
	for _, e := range es {
		if e.Type == typ {
			return e, true
		}
	}
	return Event{}, false
}
