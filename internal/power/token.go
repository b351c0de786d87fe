package power

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync"
	"time"

	"breakglass/internal/uuid"
)

// tokenLen is the length of an encoded turn token: 32 random bytes in
// unpadded base64url.
var tokenLen = base64.RawURLEncoding.EncodedLen(32)

// turnToken is one live per-turn token. Only its SHA-256 digest is kept.
type turnToken struct {
	digest    [sha256.Size]byte
	sessionID string
	// ctx ends when the token is revoked, which ends the agent requests
	// made with it (an approval still waiting expires).
	ctx    context.Context
	cancel context.CancelFunc
}

// Issue returns a fresh token for one turn of session sessionID, for the
// agent's `pve` command, and the func that revokes it when the turn ends.
// Revoking is idempotent and also ends the requests made with the token that
// are still running. Issue panics on a session id that is not a UUID v4: the
// session manager only has valid ones.
func (s *Service) Issue(sessionID string) (token string, revoke func()) {
	if !uuid.Valid(sessionID) {
		panic(fmt.Sprintf("vm: Issue with a session id that is not a UUID v4 (%d bytes)", len(sessionID)))
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (it aborts the program instead)
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	ctx, cancel := context.WithCancel(context.Background())
	t := &turnToken{digest: sha256.Sum256([]byte(token)), sessionID: sessionID, ctx: ctx, cancel: cancel}
	s.mu.Lock()
	s.tokens = append(s.tokens, t)
	s.mu.Unlock()
	var once sync.Once
	return token, func() {
		once.Do(func() {
			s.mu.Lock()
			for i, x := range s.tokens {
				if x == t {
					s.tokens = append(s.tokens[:i], s.tokens[i+1:]...)
					break
				}
			}
			s.mu.Unlock()
			cancel()
		})
	}
}

// Check returns the session of a live token.
func (s *Service) Check(token string) (sessionID string, ok bool) {
	t := s.lookup(token)
	if t == nil {
		return "", false
	}
	return t.sessionID, true
}

// lookup returns the live token equal to token, or nil. Every live token's
// digest is compared in constant time, with no early exit, so neither the
// token's length nor its first bytes show in the timing.
func (s *Service) lookup(token string) *turnToken {
	if len(token) != tokenLen {
		return nil
	}
	d := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *turnToken
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			found = t
		}
	}
	return found
}

// TurnEnv issues a token for one turn of session sessionID and returns the
// KEY=value entries the turn's environment needs for the `pve` command
// (claude.Turn.Env), with the func that revokes the token when the turn
// ends. webURL is the web's base URL as the agent reaches it (loopback).
func (s *Service) TurnEnv(sessionID, webURL string) (env []string, revoke func()) {
	token, revoke := s.Issue(sessionID)
	wait := s.MaxWait() + time.Minute
	return []string{
		EnvPVEURL + "=" + webURL,
		EnvPVEToken + "=" + token,
		EnvPVESession + "=" + sessionID,
		EnvPVEWait + "=" + strconv.Itoa(int(wait.Seconds())),
	}, revoke
}
