package turntoken

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

// The environment of an agent's turn read by the `pve` command; TurnEnv
// builds it.
const (
	// EnvURL is the web's base URL as the agent reaches it, e.g.
	// http://127.0.0.1:8080.
	EnvURL = "BREAKGLASS_PVE_URL"
	// EnvToken is the turn's token.
	EnvToken = "BREAKGLASS_PVE_TOKEN"
	// EnvSession is the turn's session id; the web checks it is the
	// token's.
	EnvSession = "BREAKGLASS_PVE_SESSION"
	// EnvWait is how many seconds `pve` waits for an answer.
	EnvWait = "BREAKGLASS_PVE_WAIT_SECONDS"
)

// tokenLen is the length of an encoded turn token: 32 random bytes in
// unpadded base64url.
var tokenLen = base64.RawURLEncoding.EncodedLen(32)

// Token is one live per-turn token, as Lookup finds it.
type Token struct {
	// SessionID is the session whose turn the token belongs to.
	SessionID string
	// Ctx ends when the token is revoked: requests made with it end too.
	Ctx context.Context
}

type entry struct {
	digest [sha256.Size]byte
	tok    Token
}

// Set holds the live tokens. Its zero value is empty and ready; it is safe
// for concurrent use.
type Set struct {
	// mu protects the following.
	mu      sync.Mutex
	entries []*entry
}

// Issue returns a fresh token for one turn of session sessionID and the
// func that revokes it when the turn ends. Revoking is idempotent and ends
// the token's Ctx. Issue panics on a session id that is not a UUID v4: the
// session manager only has valid ones.
func (s *Set) Issue(sessionID string) (token string, revoke func()) {
	if !uuid.Valid(sessionID) {
		panic(fmt.Sprintf("turntoken: Issue with a session id that is not a UUID v4 (%d bytes)", len(sessionID)))
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (it aborts the program instead)
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	ctx, cancel := context.WithCancel(context.Background())
	e := &entry{digest: sha256.Sum256([]byte(token)), tok: Token{SessionID: sessionID, Ctx: ctx}}
	s.mu.Lock()
	s.entries = append(s.entries, e)
	s.mu.Unlock()
	var once sync.Once
	return token, func() {
		once.Do(func() {
			s.mu.Lock()
			for i, x := range s.entries {
				if x == e {
					s.entries = append(s.entries[:i], s.entries[i+1:]...)
					break
				}
			}
			s.mu.Unlock()
			cancel()
		})
	}
}

// Lookup returns the live token equal to token. Every live token's digest
// is compared in constant time, with no early exit, so neither the token's
// length nor its first bytes show in the timing.
func (s *Set) Lookup(token string) (Token, bool) {
	if len(token) != tokenLen {
		return Token{}, false
	}
	d := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *entry
	for _, e := range s.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			found = e
		}
	}
	if found == nil {
		return Token{}, false
	}
	return found.tok, true
}

// TurnEnv issues a token for one turn of session sessionID and returns the
// KEY=value entries the turn's environment needs for the `pve` command
// (claude.Turn.Env), with the func that revokes the token when the turn
// ends. webURL is the web's base URL as the agent reaches it (loopback);
// wait is the longest one agent request may take.
func (s *Set) TurnEnv(sessionID, webURL string, wait time.Duration) (env []string, revoke func()) {
	token, revoke := s.Issue(sessionID)
	return []string{
		EnvURL + "=" + webURL,
		EnvToken + "=" + token,
		EnvSession + "=" + sessionID,
		EnvWait + "=" + strconv.Itoa(int(wait.Seconds())),
	}, revoke
}
