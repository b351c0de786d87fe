package webtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamReadsEventsSkippingCommentsAndRetry(t *testing.T) {
	var gotUser, gotLast string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotLast = r.Header.Get("X-Authentik-Username"), r.Header.Get("Last-Event-ID")
		fmt.Fprint(w, "retry: 1000\n\n: keepalive\n\nid: 4\nevent: text\ndata: {\"delta\":\"hi\"}\n\n"+
			"id: 5\nevent: done\ndata: {\"outcome\":\"success\"}\n\n")
	}))
	defer srv.Close()
	s, err := Attach(t.Context(), srv.Client(), srv.URL, "alice", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", 3)
	require.NoError(t, err)
	defer s.Close()
	got := s.UntilDone(t)
	assert.Equal(t, []string{"text", "done"}, Types(got))
	assert.Equal(t, int64(4), got[0].ID)
	assert.Equal(t, "hi", got[0].Data["delta"])
	done, ok := Find(got, "done")
	require.True(t, ok)
	assert.Equal(t, "success", done.Data["outcome"])
	assert.Equal(t, "alice", gotUser)
	assert.Equal(t, "3", gotLast)
}

func TestAttachRefusedIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := Attach(t.Context(), srv.Client(), srv.URL, "alice", "x", 0)
	assert.ErrorContains(t, err, "404")
}
