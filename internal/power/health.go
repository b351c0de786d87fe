package power

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"breakglass/internal/api/wire"
	"breakglass/internal/verbs"
)

// The health ladder (GET /api/vm/health): the Proxmox host, the VM's state
// and lock, its guest agent, and ssh to the devvm, checked side by side.

// Bounds of the health ladder.
const (
	// DefaultHealthBudget bounds one check of the whole ladder.
	DefaultHealthBudget = 10 * time.Second
	// HealthCacheFor is how long an answer is reused.
	HealthCacheFor = 5 * time.Second
	// healthActor is who the keyholder's audit line says asked.
	healthActor = "web:health"
)

// Health is the answer of GET /api/vm/health. Each rung says whether it
// answered and, when not, why.
type Health struct {
	PVE        PVERung   `json:"pve"`
	VM         VMRung    `json:"vm"`
	GuestAgent CheckRung `json:"guest_agent"`
	SSH        CheckRung `json:"ssh"`
	CheckedAt  time.Time `json:"checked_at"`
}

// PVERung: the Proxmox host ran `status` (whatever the VM's state), and how
// long the round trip took.
type PVERung struct {
	OK    bool   `json:"ok"`
	MS    int64  `json:"ms"`
	Error string `json:"error"`
}

// VMRung: the VM's state as qm says it ("running", "stopped", …;
// "unknown" when the host did not answer) and its lock ("" when none).
type VMRung struct {
	State string `json:"state"`
	Lock  string `json:"lock"`
}

// CheckRung: a check that answered or not.
type CheckRung struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// healthCache holds the last answer and the check in flight.
type healthCache struct {
	// mu protects the following.
	mu     sync.Mutex
	last   Health
	flight chan struct{} // closed when the check in flight is done
}

// Health returns the ladder, at most HealthCacheFor old. Callers that come
// while a check runs wait for it (or for ctx); the check itself runs to its
// own budget (DefaultHealthBudget) whoever waits.
func (s *Service) Health(ctx context.Context) (Health, error) {
	c := &s.health
	c.mu.Lock()
	if !c.last.CheckedAt.IsZero() && s.now().Sub(c.last.CheckedAt) < HealthCacheFor {
		h := c.last
		c.mu.Unlock()
		return h, nil
	}
	ch := c.flight
	if ch == nil {
		ch = make(chan struct{})
		c.flight = ch
		go func() {
			h := s.checkHealth()
			c.mu.Lock()
			c.last, c.flight = h, nil
			c.mu.Unlock()
			close(ch)
		}()
	}
	c.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return Health{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, nil
}

// checkHealth checks every rung at once within the budget.
func (s *Service) checkHealth() Health {
	ctx, cancel := context.WithTimeout(context.Background(), s.healthBudget)
	defer cancel()
	var h Health
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		start := s.now()
		res, err := s.call(ctx, string(verbs.Status), healthActor, Request{})
		h.PVE.MS = s.now().Sub(start).Milliseconds()
		h.VM.State = "unknown"
		if err != nil {
			h.PVE.Error = s.rungError(ctx, err)
			return
		}
		h.PVE.OK = true
		for _, line := range strings.Split(res.Output, "\n") {
			if v, ok := strings.CutPrefix(line, "status:"); ok {
				h.VM.State = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "lock:"); ok {
				h.VM.Lock = strings.TrimSpace(v)
			}
		}
		if res.ExitCode != 0 {
			h.PVE.Error = fmt.Sprintf("qm status exited %d: %s", res.ExitCode, firstLine(res.Output))
		}
	}()
	go func() {
		defer wg.Done()
		res, err := s.call(ctx, string(verbs.Guest), healthActor, Request{})
		switch {
		case err != nil:
			h.GuestAgent.Error = s.rungError(ctx, err)
		case res.ExitCode != 0:
			h.GuestAgent.Error = guestError(res.Output, res.ExitCode)
		default:
			h.GuestAgent.OK = true
		}
	}()
	go func() {
		defer wg.Done()
		if s.ssh == nil {
			h.SSH.Error = "not checked"
			return
		}
		if err := s.ssh(ctx); err != nil {
			h.SSH.Error = s.rungError(ctx, err)
			return
		}
		h.SSH.OK = true
	}()
	wg.Wait()
	h.CheckedAt = s.now()
	return h
}

// rungError words a rung's failure for the operator.
func (s *Service) rungError(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, ErrUnreachable):
		return "keyholder unreachable"
	case ctx.Err() != nil:
		return fmt.Sprintf("no answer within %v", s.healthBudget)
	}
	return firstLine(err.Error())
}

// guestError is the guest verb's reason for a failed ping: the first line
// under ping's heading.
func guestError(out string, code int) string {
	_, rest, ok := strings.Cut(out, " ping ==\n")
	if ok && firstLine(rest) != "" {
		return firstLine(rest)
	}
	return fmt.Sprintf("the guest agent did not answer (exit %d)", code)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// serveHealth answers GET /api/vm/health.
func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request, _ wire.Principal) {
	h, err := s.Health(r.Context())
	if err != nil {
		fail(w, http.StatusServiceUnavailable, wire.CodeError, "the health check did not finish")
		return
	}
	wire.WriteJSON(w, http.StatusOK, h)
}
