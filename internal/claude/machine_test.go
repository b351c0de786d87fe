package claude

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

// The turn's rules, without a process: each case feeds the machine typed
// inputs and checks the events it emits, when it stops claude, and the
// outcome.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	initLine    = `{"type":"system","subtype":"init","session_id":"s","model":"m","tools":["Bash"]}`
	deltaLine   = `{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}}`
	okResult    = `{"type":"result","subtype":"success","is_error":false,"result":"hi","total_cost_usd":0.01}`
	errResult   = `{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400 bad"}`
	retryLine   = `{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":500,"error_status":null,"error":"connection refused"}`
	statusLine  = `{"type":"system","subtype":"status","status":"requesting"}`
	refusedLine = `{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["No conversation found with session ID: x"]}`
)

// lineAt is a stdout line read at t0+d.
func lineAt(d time.Duration, s string) input {
	return inLine{T: NewTranslator().Line([]byte(s)), Text: s, Now: t0.Add(d)}
}

func lineIn(s string) input { return lineAt(0, s) }

func tick(d time.Duration) input { return inTick{Now: t0.Add(d)} }

func exitWith(code int, stderr string) input {
	return inExit{childExit{Code: code, Stderr: stderr}}
}

// machineRun is what feeding a case gave.
type machineRun struct {
	events     []string // type, or type:message for errors
	interrupts []int    // the indexes of the inputs that stopped claude
	last       step
}

func feedMachine(t *testing.T, cfg machineConfig, ins []input) machineRun {
	t.Helper()
	m := newMachine(cfg, t0)
	var r machineRun
	for i, in := range ins {
		s := m.Step(in)
		for _, e := range s.Emit {
			name := string(e.Type)
			if e.Type == event.Error {
				var d event.ErrorData
				require.NoError(t, json.Unmarshal(e.Data, &d))
				name += ":" + d.Message
			}
			r.events = append(r.events, name)
		}
		if s.Interrupt {
			r.interrupts = append(r.interrupts, i)
		}
		require.Equal(t, i == len(ins)-1, s.Done, "only the exit ends the attempt (input %d)", i)
		r.last = s
	}
	return r
}

func TestMachineRules(t *testing.T) {
	cfg := machineConfig{InitTimeout: 10 * time.Second, RetryCutoff: 60 * time.Second}
	resume := cfg
	resume.Resume = true
	tests := []struct {
		name       string
		cfg        machineConfig
		in         []input
		events     []string
		interrupts []int
		outcome    Outcome
		swap       bool
	}{
		{name: "success", cfg: cfg,
			in:      []input{lineIn(initLine), lineIn(statusLine), lineIn(deltaLine), lineIn(okResult), exitWith(0, "")},
			events:  []string{"session", "status", "text", "result"},
			outcome: Outcome{event.OutcomeSuccess, 0}},
		{name: "held-until-init", cfg: cfg,
			in:      []input{lineIn(`{"type":"rate_limit_event"}`), lineIn(statusLine), lineIn(initLine), lineIn(okResult), exitWith(0, "")},
			events:  []string{"status", "session", "result"},
			outcome: Outcome{event.OutcomeSuccess, 0}},
		{name: "init-watchdog", cfg: cfg,
			in:         []input{tick(9 * time.Second), tick(10 * time.Second), tick(11 * time.Second), exitWith(130, "starting up\n")},
			events:     []string{"error:claude did not start within 10s (no system/init line); stopped. starting up"},
			interrupts: []int{1},
			outcome:    Outcome{event.OutcomeError, 130}},
		{name: "init-in-time-disarms", cfg: cfg,
			in:      []input{lineIn(initLine), tick(time.Hour), lineIn(okResult), exitWith(0, "")},
			events:  []string{"session", "result"},
			outcome: Outcome{event.OutcomeSuccess, 0}},
		{name: "retry-cutoff", cfg: cfg,
			in: []input{lineIn(initLine), lineAt(time.Second, retryLine), lineAt(30*time.Second, retryLine), tick(60 * time.Second),
				tick(61 * time.Second), exitWith(130, "")},
			events: []string{"session", "status", "status",
				"error:the Anthropic API is unreachable: claude was still retrying after 1m0s; stopped (last error: connection refused)"},
			interrupts: []int{4},
			outcome:    Outcome{event.OutcomeError, 130}},
		{name: "an-answer-restarts-the-retry-clock", cfg: cfg,
			in: []input{lineIn(initLine), lineAt(time.Second, retryLine), lineAt(50*time.Second, deltaLine), lineAt(55*time.Second, retryLine),
				tick(61 * time.Second), tick(115 * time.Second), exitWith(130, "")},
			events: []string{"session", "status", "text", "status",
				"error:the Anthropic API is unreachable: claude was still retrying after 1m0s; stopped (last error: connection refused)"},
			interrupts: []int{5},
			outcome:    Outcome{event.OutcomeError, 130}},
		{name: "timeout", cfg: cfg,
			in:         []input{lineIn(initLine), lineIn(deltaLine), inStop{}, lineIn(errResult), exitWith(1, "")},
			events:     []string{"session", "text", "result", "error:the turn reached its time limit and was stopped"},
			interrupts: []int{2},
			outcome:    Outcome{event.OutcomeTimeout, 1}},
		{name: "cancel-is-no-error", cfg: cfg,
			in:         []input{lineIn(initLine), lineIn(deltaLine), inStop{Cancel: true}, inStop{}, tick(time.Hour), lineIn(errResult), exitWith(1, "")},
			events:     []string{"session", "text", "result"},
			interrupts: []int{2},
			outcome:    Outcome{event.OutcomeCancelled, 1}},
		{name: "cancel-before-init-keeps-what-came", cfg: cfg,
			in:         []input{lineIn(statusLine), inStop{Cancel: true}, exitWith(-1, "")},
			events:     []string{"status"},
			interrupts: []int{1},
			outcome:    Outcome{event.OutcomeCancelled, -1}},
		{name: "crash", cfg: cfg,
			in:      []input{lineIn(initLine), lineIn(deltaLine), exitWith(2, "TypeError: x is undefined\n")},
			events:  []string{"session", "text", "error:claude exited with status 2: TypeError: x is undefined"},
			outcome: Outcome{event.OutcomeError, 2}},
		{name: "killed", cfg: cfg,
			in:      []input{lineIn(initLine), inExit{childExit{Code: -1, Signal: "killed"}}},
			events:  []string{"session", "error:claude was killed: killed"},
			outcome: Outcome{event.OutcomeError, -1}},
		{name: "is-error-result", cfg: cfg,
			in:      []input{lineIn(initLine), lineIn(errResult), exitWith(1, "")},
			events:  []string{"session", "result", "error:claude ended the turn with an error (success): API Error: 400 bad"},
			outcome: Outcome{event.OutcomeError, 1}},
		{name: "is-error-result-exit-0", cfg: cfg,
			in:      []input{lineIn(initLine), lineIn(errResult), exitWith(0, "")},
			events:  []string{"session", "result", "error:claude ended the turn with an error (success): API Error: 400 bad"},
			outcome: Outcome{event.OutcomeError, 0}},
		{name: "no-result", cfg: cfg,
			in:      []input{lineIn(initLine), exitWith(0, "")},
			events:  []string{"session", "error:claude ended without a result"},
			outcome: Outcome{event.OutcomeError, 0}},
		{name: "invalid-output-reported-once", cfg: cfg,
			in: []input{lineIn(initLine), lineIn("Segmentation fault"), lineIn("core dumped"), lineIn(okResult), exitWith(0, "")},
			events: []string{"session", `error:claude printed output that is not stream-json: "Segmentation fault"`,
				"result"},
			outcome: Outcome{event.OutcomeError, 0}},
		{name: "resume-refused-swaps", cfg: resume,
			in:      []input{lineIn(refusedLine), exitWith(1, "")},
			outcome: Outcome{event.OutcomeError, 1}, swap: true},
		{name: "resume-refused-on-stderr", cfg: resume,
			in:      []input{exitWith(1, "No conversation found with session ID: x")},
			outcome: Outcome{event.OutcomeError, 1}, swap: true},
		{name: "session-id-in-use-swaps", cfg: cfg,
			in:      []input{exitWith(1, "Error: Session ID x is already in use.")},
			outcome: Outcome{event.OutcomeError, 1}, swap: true},
		{name: "other-flags-phrase-is-no-swap", cfg: cfg,
			in:      []input{exitWith(1, "No conversation found with session ID: x")},
			events:  []string{"error:claude exited with status 1: No conversation found with session ID: x"},
			outcome: Outcome{event.OutcomeError, 1}},
		{name: "no-swap-after-init", cfg: resume,
			in: []input{lineIn(initLine), exitWith(1, "No conversation found")},
			events: []string{"session",
				"error:claude exited with status 1: No conversation found"},
			outcome: Outcome{event.OutcomeError, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := feedMachine(t, tc.cfg, tc.in)
			assert.Equal(t, tc.events, r.events)
			assert.Equal(t, tc.interrupts, r.interrupts)
			assert.Equal(t, tc.outcome, r.last.Outcome)
			assert.Equal(t, tc.swap, r.last.Swap)
		})
	}
}

// TestMachineSwapHoldsTheRefusedAttempt: the refused attempt's events are
// handed back, not emitted, with its stderr.
func TestMachineSwapHoldsTheRefusedAttempt(t *testing.T) {
	m := newMachine(machineConfig{InitTimeout: time.Second, RetryCutoff: time.Second, Resume: true}, t0)
	assert.Empty(t, m.Step(lineIn(refusedLine)).Emit)
	s := m.Step(exitWith(1, "  No conversation found with session ID: x\n"))
	assert.True(t, s.Swap)
	assert.Empty(t, s.Emit)
	require.Len(t, s.Held, 2, "the result and its error")
	assert.Equal(t, event.Result, s.Held[0].Type)
	assert.Equal(t, "No conversation found with session ID: x", s.Stderr)
}

// TestMachineDeadline: the watchdog is asked for the nearest rule's time,
// and for none once claude is being stopped.
func TestMachineDeadline(t *testing.T) {
	m := newMachine(machineConfig{InitTimeout: 10 * time.Second, RetryCutoff: 5 * time.Second}, t0)
	d, ok := m.Deadline()
	assert.True(t, ok)
	assert.Equal(t, t0.Add(10*time.Second), d, "init")
	m.Step(lineAt(2*time.Second, retryLine))
	d, _ = m.Deadline()
	assert.Equal(t, t0.Add(7*time.Second), d, "the retry cutoff comes first")
	m.Step(lineIn(initLine))
	d, _ = m.Deadline()
	assert.Equal(t, t0.Add(7*time.Second), d, "init seen: the retry cutoff only")
	m.Step(lineIn(deltaLine))
	_, ok = m.Deadline()
	assert.False(t, ok, "answered: nothing to watch")
	m.Step(lineAt(3*time.Second, retryLine))
	m.Step(inStop{Cancel: true})
	_, ok = m.Deadline()
	assert.False(t, ok, "stopping: nothing to watch")
}
