package power

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// The session manager is the web's transcript.
var _ Transcript = (*session.Manager)(nil)

// idleRunner is never asked to run a turn in these tests.
type idleRunner struct{}

func (idleRunner) Run(context.Context, claude.Turn, func(event.Event)) claude.Outcome {
	return claude.Outcome{Outcome: event.OutcomeError, ExitCode: -1}
}

func TestOperatorVerbLandsInTheRealSessionLog(t *testing.T) {
	mgr, err := session.New(session.Config{Dir: t.TempDir(), Runner: idleRunner{}})
	require.NoError(t, err)
	defer mgr.Close()
	info, err := mgr.Create()
	require.NoError(t, err)

	s := newServer(t, Config{})
	s.svc.transcript = mgr // the fixture's fake, swapped for the real manager
	r := s.do(t, "POST", "/api/vm/reset", asAlice, `{"session_id":"`+info.ID+`"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)

	sub, err := mgr.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.Len(t, slices.Collect(sub.Replay()), 1)
	e := slices.Collect(sub.Replay())[0]
	assert.Equal(t, event.Verb, e.Type)
	assert.Equal(t, int64(1), e.ID)
	v := decode[event.VerbData](t, e)
	assert.Equal(t, "reset", v.Verb)
	assert.Equal(t, "alice", v.Actor)
	require.NotNil(t, v.ExitCode)
	assert.Equal(t, 0, *v.ExitCode)
}

// Both packages must agree on what a session id is: the manager makes them,
// this package checks them.
func TestSessionIDsAgreeWithTheSessionPackage(t *testing.T) {
	mgr, err := session.New(session.Config{Dir: t.TempDir(), Runner: idleRunner{}})
	require.NoError(t, err)
	defer mgr.Close()
	for i := 0; i < 20; i++ {
		info, err := mgr.Create()
		require.NoError(t, err)
		assert.True(t, uuid.Valid(info.ID), info.ID)
	}
}
