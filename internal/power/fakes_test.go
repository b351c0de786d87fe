package power

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/ipc"
)

// fakeKeyholder stands in for the keyholder's socket: it counts calls and
// answers with a fixed result or error.
type fakeKeyholder struct {
	mu       sync.Mutex
	calls    []fakeCall
	lists    int
	exitCode int
	err      error
	// block, when set, holds Run until it is closed or ctx ends.
	block chan struct{}
	// presence is the mode GET /v1/verbs reports: "" means off (tests
	// not about presence), "required" turns it on.
	presence string
	// challenges are the challenge requests seen.
	challenges []ipc.ChallengeRequest
}

type fakeCall struct {
	verb, actor string
	args        []string
	presence    *ipc.Presence
}

func (f *fakeKeyholder) Verbs(ctx context.Context) (VerbList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.err != nil {
		return VerbList{}, f.err
	}
	mode := f.presence
	if mode == "" {
		mode = "off"
	}
	return VerbList{VMID: 102, Presence: mode, Verbs: []VerbInfo{
		{Name: "status"}, {Name: "forensics"}, {Name: "reset", Mutating: true},
		{Name: "stop", Mutating: true}, {Name: "start", Mutating: true}, {Name: "cycle", Mutating: true},
	}}, nil
}

func (f *fakeKeyholder) RunRequest(ctx context.Context, verb string, req ipc.RunRequest) (Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{verb: verb, actor: req.Actor, args: req.Args, presence: req.Presence})
	block, code, err := f.block, f.exitCode, f.err
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Verb: verb, VMID: 102, ExitCode: code, Output: "ran " + verb + "\n", DurationMS: 7}, nil
}

func (f *fakeKeyholder) Challenge(ctx context.Context, req ipc.ChallengeRequest) (ipc.Challenge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.challenges = append(f.challenges, req)
	return ipc.Challenge{ChallengeID: "cid-" + req.Verb, Challenge: "Y2hhbGxlbmdl", RPID: "localhost", CredentialIDs: []string{"Y3JlZA"}}, nil
}

// Calls returns the verbs the keyholder was asked to run.
func (f *fakeKeyholder) Calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// fakeTranscript records appended events and signals each one.
type fakeTranscript struct {
	mu     sync.Mutex
	events map[string][]event.Event
	ch     chan event.Event
}

func newFakeTranscript() *fakeTranscript {
	return &fakeTranscript{events: map[string][]event.Event{}, ch: make(chan event.Event, 256)}
}

func (f *fakeTranscript) Append(sessionID string, e event.Event) error {
	f.mu.Lock()
	f.events[sessionID] = append(f.events[sessionID], e)
	f.mu.Unlock()
	select {
	case f.ch <- e:
	default:
	}
	return nil
}

// Events returns the session's events.
func (f *fakeTranscript) Events(sessionID string) []event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Event(nil), f.events[sessionID]...)
}

// All returns every event of every session.
func (f *fakeTranscript) All() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, es := range f.events {
		n += len(es)
	}
	return n
}

// waitApproval returns the next approval event in the given state.
func (f *fakeTranscript) waitApproval(t *testing.T, state event.ApprovalState) event.ApprovalData {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-f.ch:
			if e.Type != event.Approval {
				continue
			}
			d := decode[event.ApprovalData](t, e)
			if d.State == state {
				return d
			}
		case <-deadline:
			t.Fatalf("no %s approval event within 10s", state)
		}
	}
}

func decode[T any](t *testing.T, e event.Event) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(e.Data, &v))
	return v
}

// summary is the session's events as "type:detail" strings, for asserting
// order at a glance.
func summary(t *testing.T, es []event.Event) []string {
	t.Helper()
	var out []string
	for _, e := range es {
		switch e.Type {
		case event.Approval:
			out = append(out, "approval:"+string(decode[event.ApprovalData](t, e).State))
		case event.Verb:
			d := decode[event.VerbData](t, e)
			s := "verb:" + d.Verb + ":" + d.Actor
			if d.Error != "" {
				s += ":error"
			}
			out = append(out, s)
		default:
			out = append(out, string(e.Type))
		}
	}
	return out
}

const (
	sessionA = "0b7e4c52-8c1a-4d0e-9f3b-2a6d5e7f8a91"
	sessionB = "5f0c2d6e-1b3a-4c8d-a7e9-6f4b3c2d1e0a"
)

type fixture struct {
	svc *Service
	kh  *fakeKeyholder
	tr  *fakeTranscript
	reg *prometheus.Registry
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{kh: &fakeKeyholder{}, tr: newFakeTranscript(), reg: prometheus.NewRegistry()}
	cfg.Keyholder, cfg.Transcript, cfg.Registerer = f.kh, f.tr, f.reg
	svc, err := New(cfg)
	require.NoError(t, err)
	f.svc = svc
	return f
}

// badVerbs must never reach the keyholder, whoever sends them and however.
var badVerbs = []struct {
	name string
	in   string
}{
	{"empty", ""},
	{"trailing-space", "status "},
	{"upper", "STATUS"},
	{"semicolon", "status;reboot"},
	{"and-and", "reset && reboot"},
	{"subshell", "$(id)"},
	{"newline", "status\nreset"},
	{"nul", "status\x00"},
	{"cyrillic-s", "\u0455tatus"},
	{"dotdot", "../status"},
	{"vmid-arg", "reset 103"},
	{"url-encoded-space", "status%20"},
	{"url-encoded-semicolon", "status%3Breboot"},
	{"flag", "stop --skiplock"},
	{"destroy", "destroy"},
	{"long", strings.Repeat("reset", 100)},
}

var _ Keyholder = (*ipc.Client)(nil)
