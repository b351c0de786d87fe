package presence

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// Challenge limits.
const (
	// ChallengeTTL is how long an issued challenge may be answered.
	ChallengeTTL = 120 * time.Second
	// MaxOutstanding bounds the challenges of one purpose waiting for an
	// answer; issuing one more drops the oldest of that purpose. Login
	// challenges are minted for anyone who opens the sign-in page, so they
	// never push out a verb's challenge while the operator taps.
	MaxOutstanding = 16
	// maxUsed bounds the ids remembered as used, so a replay is told apart
	// from a guess; the oldest is forgotten first.
	maxUsed = 256
)

// Purpose is what a challenge may be used for.
type Purpose string

// The purposes of a challenge.
const (
	// PurposeVerb: running one mutating verb with its argv on one VM.
	PurposeVerb Purpose = "verb"
	// PurposeLogin: signing in to the web.
	PurposeLogin Purpose = "login"
)

// Binding is what a challenge is bound to: an assertion over it is good for
// that and nothing else.
type Binding struct {
	Purpose Purpose
	// Verb, Args and VMID are set for PurposeVerb only.
	Verb string
	Args []string
	VMID int
}

func (b Binding) equal(o Binding) bool {
	return b.Purpose == o.Purpose && b.Verb == o.Verb && b.VMID == o.VMID &&
		slices.Equal(b.Args, o.Args)
}

// String is how audit lines show the binding.
func (b Binding) String() string {
	if b.Purpose != PurposeVerb {
		return string(b.Purpose)
	}
	s := b.Verb + " vm " + strconv.Itoa(b.VMID)
	if len(b.Args) > 0 {
		a, _ := json.Marshal(b.Args)
		s += " argv " + string(a)
	}
	return s
}

// encode is the binding's unambiguous byte form, hashed into the challenge:
// fields separated by NUL, which no verb, argv element or number holds.
func (b Binding) encode() []byte {
	a, _ := json.Marshal(b.Args)
	return []byte(string(b.Purpose) + "\x00" + b.Verb + "\x00" + string(a) + "\x00" + strconv.Itoa(b.VMID))
}

// Challenge is one issued challenge.
type Challenge struct {
	// ID names the challenge (128 random bits, base64url).
	ID string
	// Challenge is what the authenticator signs: SHA-256(32 random bytes ‖
	// binding), so an audit line can show what it was issued for.
	Challenge []byte
	Binding   Binding
	ExpiresAt time.Time
}

// challenges holds issued challenges. Not safe for concurrent use: the
// Verifier's lock guards it.
type challenges struct {
	rand io.Reader
	// live in issue order, oldest first.
	live []Challenge
	// used ids with the time they would have expired, oldest first.
	used []usedID
}

type usedID struct {
	id      string
	expires time.Time
}

// issue makes a challenge for b, dropping the oldest of b's purpose when
// MaxOutstanding of that purpose are waiting.
func (s *challenges) issue(b Binding, now time.Time) (Challenge, error) {
	s.pruneLocked(now)
	var rnd [32]byte
	var id [16]byte
	if _, err := io.ReadFull(s.rand, rnd[:]); err != nil {
		return Challenge{}, fmt.Errorf("challenge randomness: %w", err)
	}
	if _, err := io.ReadFull(s.rand, id[:]); err != nil {
		return Challenge{}, fmt.Errorf("challenge id randomness: %w", err)
	}
	h := sha256.New()
	h.Write(rnd[:])
	h.Write(b.encode())
	b.Args = slices.Clone(b.Args)
	c := Challenge{ID: Encode(id[:]), Challenge: h.Sum(nil), Binding: b, ExpiresAt: now.Add(ChallengeTTL)}
	s.dropOldestLocked(b.Purpose)
	s.live = append(s.live, c)
	return c, nil
}

// take consumes the challenge named id, whatever happens next, and checks
// it is unexpired and bound to b. This is the relying party's own check
// before step 5 of verifying an assertion: options.challenge is the one
// the keyholder issued for exactly this request.
func (s *challenges) take(id string, b Binding, now time.Time) (Challenge, error) {
	s.pruneLocked(now)
	i := slices.IndexFunc(s.live, func(c Challenge) bool { return c.ID == id })
	if i < 0 {
		if slices.ContainsFunc(s.used, func(u usedID) bool { return u.id == id }) {
			return Challenge{}, refuse(ReasonReplayed, "the challenge was already used; ask for a new one", nil)
		}
		return Challenge{}, refuse(ReasonUnknownChallenge, "no such challenge (expired long ago, dropped, or never issued)", nil)
	}
	c := s.live[i]
	// WARNING: consumed before any other check, so a failed attempt cannot
	// be retried on the same challenge (TestChallengeConsumedByFailure).
	s.live = slices.Delete(s.live, i, i+1)
	if len(s.used) >= maxUsed {
		s.used = slices.Delete(s.used, 0, len(s.used)-maxUsed+1)
	}
	s.used = append(s.used, usedID{id: id, expires: c.ExpiresAt})
	if !now.Before(c.ExpiresAt) {
		return Challenge{}, refuse(ReasonExpired, "the challenge expired; ask for a new one", nil)
	}
	if !c.Binding.equal(b) {
		return Challenge{}, refuse(ReasonWrongBinding, "the challenge was issued for "+c.Binding.String()+", not "+b.String(), nil)
	}
	return c, nil
}

// pruneLocked forgets used ids past their expiry (a replay of those is
// refused as unknown, which it is). Expired live challenges stay until
// taken or dropped, so their answer says "expired".
func (s *challenges) pruneLocked(now time.Time) {
	i := 0
	for i < len(s.used) && !now.Before(s.used[i].expires.Add(ChallengeTTL)) {
		i++
	}
	s.used = slices.Delete(s.used, 0, i)
}

// dropOldestLocked makes room for one more challenge of purpose p: while
// MaxOutstanding of p wait, the oldest of p goes. Other purposes' stay.
func (s *challenges) dropOldestLocked(p Purpose) {
	for {
		n, oldest := 0, -1
		for i, c := range s.live {
			if c.Binding.Purpose == p {
				if oldest < 0 {
					oldest = i
				}
				n++
			}
		}
		if n < MaxOutstanding {
			return
		}
		s.live = slices.Delete(s.live, oldest, oldest+1)
	}
}
