package turntoken

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	sessionA = "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11"
	sessionB = "7d2e9f40-1c3b-4a5d-8e6f-9a0b1c2d3e4f"
)

func TestTokens(t *testing.T) {
	var s Set
	tokA, revokeA := s.Issue(sessionA)
	tokB, revokeB := s.Issue(sessionB)
	defer revokeB()
	assert.NotEqual(t, tokA, tokB)
	assert.Len(t, tokA, 43, "32 random bytes, base64url")

	a, ok := s.Lookup(tokA)
	require.True(t, ok)
	assert.Equal(t, sessionA, a.SessionID)
	b, ok := s.Lookup(tokB)
	assert.True(t, ok)
	assert.Equal(t, sessionB, b.SessionID)

	revokeA()
	revokeA() // idempotent
	_, ok = s.Lookup(tokA)
	assert.False(t, ok, "a revoked token is dead")
	assert.Error(t, a.Ctx.Err(), "its requests end")
	_, ok = s.Lookup(tokB)
	assert.True(t, ok, "revoking one token leaves the others")
	assert.NoError(t, b.Ctx.Err())

	for _, bad := range []string{"", tokB[:42], tokB + "A", strings.ToUpper(tokB)} {
		_, ok := s.Lookup(bad)
		assert.False(t, ok, "%q", bad)
	}
	assert.Panics(t, func() { s.Issue("../x") }, "the session manager only has UUID v4 ids")
}

func TestTurnEnv(t *testing.T) {
	var s Set
	env, revoke := s.TurnEnv(sessionA, "http://127.0.0.1:8080", 90*time.Second)
	require.Len(t, env, 4)
	assert.Equal(t, EnvURL+"=http://127.0.0.1:8080", env[0])
	tok, ok := strings.CutPrefix(env[1], EnvToken+"=")
	require.True(t, ok)
	assert.Equal(t, EnvSession+"="+sessionA, env[2])
	assert.Equal(t, EnvWait+"=90", env[3])
	_, ok = s.Lookup(tok)
	assert.True(t, ok)
	revoke()
	_, ok = s.Lookup(tok)
	assert.False(t, ok)
}
