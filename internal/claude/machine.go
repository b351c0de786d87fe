package claude

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"breakglass/internal/event"
)

// The turn state machine decides everything about one claude process that
// is not plumbing: which events go out and when, when to stop claude and
// why, and how the attempt ended. It is fed typed inputs and never touches
// a process, a timer or a goroutine, so every rule is a table test
// (machine_test.go).

// input is one thing that happened to a running attempt.
type input interface{ isInput() }

// inLine is a stdout line, translated.
type inLine struct {
	T Translated
	// Text is the raw line, capped, for messages about it.
	Text string
	Now  time.Time
}

// inTick is the watchdog's clock: the machine asked for it by Deadline.
type inTick struct{ Now time.Time }

// inStop is the turn's context ending: the operator's cancel, or its time
// limit.
type inStop struct{ Cancel bool }

// inExit is the end of claude, its group and its output: the last input.
type inExit struct{ childExit }

func (inLine) isInput() {}
func (inTick) isInput() {}
func (inStop) isInput() {}
func (inExit) isInput() {}

// stopReason says why the machine stopped claude itself.
type stopReason string

const (
	stopNone    stopReason = ""
	stopCancel  stopReason = "cancel"
	stopTimeout stopReason = "timeout"
	stopNoInit  stopReason = "no-init"
	stopRetries stopReason = "retries"
)

// step is what the machine answers to one input.
type step struct {
	// Emit are the events to emit now, in order.
	Emit []event.Event
	// Interrupt: stop claude now (SIGINT to its group, SIGKILL after the
	// grace period).
	Interrupt bool
	// Done: the attempt is over; Outcome says how.
	Done    bool
	Outcome Outcome
	// Swap: claude refused the session flag; try once more with the other
	// one. Held are the events of the refused attempt, not emitted.
	Swap bool
	Held []event.Event
	// Stderr is the tail of claude's stderr, briefly, when Swap is set.
	Stderr string
	// Write are lines to write on claude's stdin now (control responses
	// the machine decides alone).
	Write [][]byte
	// Ask: the session decides this permission request (its mode, maybe
	// the operator); the answer goes to stdin when it comes.
	Ask *PermissionRequest
	// Withdraw: claude no longer waits for the answer to this request.
	Withdraw string
	// CloseInput: close claude's stdin (after the first result, or when
	// the turn stops); no steering message is taken afterwards.
	CloseInput bool
}

// machineConfig are the rules' parameters.
type machineConfig struct {
	InitTimeout time.Duration
	RetryCutoff time.Duration
	// Resume: this attempt used --resume (else --session-id).
	Resume bool
}

// machine is the state of one attempt.
type machine struct {
	cfg   machineConfig
	start time.Time

	initSeen bool
	// retrySince is when the API retries that are still going on began
	// (zero: none); an answer from the API clears it.
	retrySince   time.Time
	lastRetryErr string
	result       *event.ResultData
	stop         stopReason
	errorEmitted bool
	invalidSeen  bool
	// held are the events before system/init: dropped if claude refuses
	// the session flag, emitted otherwise.
	held []event.Event
	// inputClosed is set once CloseInput was asked for.
	inputClosed bool
}

func newMachine(cfg machineConfig, start time.Time) *machine {
	return &machine{cfg: cfg, start: start}
}

// Step feeds one input.
func (m *machine) Step(in input) step {
	switch in := in.(type) {
	case inLine:
		return m.line(in)
	case inTick:
		return m.tick(in.Now)
	case inStop:
		if in.Cancel {
			return m.stopWith(stopCancel)
		}
		return m.stopWith(stopTimeout)
	case inExit:
		return m.exit(in.childExit)
	}
	return step{}
}

// Deadline is when the machine next wants an inTick; false: never.
func (m *machine) Deadline() (time.Time, bool) {
	if m.stop != stopNone {
		return time.Time{}, false
	}
	var d time.Time
	if !m.initSeen {
		d = m.start.Add(m.cfg.InitTimeout)
	}
	if !m.retrySince.IsZero() {
		if r := m.retrySince.Add(m.cfg.RetryCutoff); d.IsZero() || r.Before(d) {
			d = r
		}
	}
	return d, !d.IsZero()
}

func (m *machine) line(in inLine) step {
	t := in.T
	evs := t.Events
	if t.Kind == LineInvalid && !m.invalidSeen {
		m.invalidSeen = true
		evs = append(evs, errorEvent(fmt.Sprintf("claude printed output that is not stream-json: %q", in.Text)))
	}
	if t.Retry != nil {
		if m.retrySince.IsZero() && m.stop == stopNone {
			m.retrySince = in.Now
		}
		m.lastRetryErr = t.Retry.Error
	}
	if t.Answered {
		m.retrySince = time.Time{}
	}
	if t.Init {
		m.initSeen = true
	}
	st := step{Emit: m.out(evs)}
	if t.Result != nil {
		m.result = t.Result
		// WARNING: the turn is over once claude has answered every message
		// it read before its stdin closed (docs/operator-loop.md): close
		// stdin at the first result, and a steering message sent before it
		// still gets its own answer (TestRunnerSteerLate).
		st.CloseInput = m.closeInput()
	}
	if c := t.Control; c != nil {
		switch {
		case c.Permission == nil:
			st.Write = append(st.Write, encodeControlError(c.RequestID, "breakglass does not serve control requests of type "+strconvQuote(c.Subtype)))
		case m.stop != stopNone:
			st.Write = append(st.Write, encodePermission(*c.Permission, PermissionAnswer{Message: "The turn is being stopped; this command was not run."}))
		default:
			st.Ask = c.Permission
		}
	}
	st.Withdraw = t.CancelRequest
	return st
}

// closeInput reports whether stdin is to be closed now (the first time).
func (m *machine) closeInput() bool {
	if m.inputClosed {
		return false
	}
	m.inputClosed = true
	return true
}

// out decides which of a line's events go out now.
func (m *machine) out(evs []event.Event) []event.Event {
	var emit []event.Event
	for _, e := range evs {
		if e.Type == event.Error && m.stop != stopNone {
			// claude's own complaint about being interrupted (an is_error
			// result after SIGINT) is not news: the outcome says why.
			continue
		}
		if e.Type == event.Error {
			m.errorEmitted = true
		}
		if !m.initSeen {
			m.held = append(m.held, e)
			continue
		}
		emit = append(emit, m.flush()...)
		emit = append(emit, e)
	}
	return emit
}

func (m *machine) flush() []event.Event {
	h := m.held
	m.held = nil
	return h
}

func (m *machine) tick(now time.Time) step {
	switch {
	case m.stop != stopNone:
		return step{}
	case !m.initSeen && !now.Before(m.start.Add(m.cfg.InitTimeout)):
		return m.stopWith(stopNoInit)
	case !m.retrySince.IsZero() && !now.Before(m.retrySince.Add(m.cfg.RetryCutoff)):
		return m.stopWith(stopRetries)
	}
	return step{}
}

func (m *machine) stopWith(why stopReason) step {
	if m.stop != stopNone {
		return step{}
	}
	m.stop = why
	return step{Interrupt: true, CloseInput: m.closeInput()}
}

// exit decides the attempt's outcome.
func (m *machine) exit(x childExit) step {
	switch m.stop {
	case stopCancel:
		return m.done(event.OutcomeCancelled, x.Code, "")
	case stopTimeout:
		return m.done(event.OutcomeTimeout, x.Code, "the turn reached its time limit and was stopped")
	case stopNoInit:
		return m.done(event.OutcomeError, x.Code, fmt.Sprintf("claude did not start within %v (no system/init line); stopped. %s", m.cfg.InitTimeout, briefly(x.Stderr)))
	case stopRetries:
		msg := fmt.Sprintf("the Anthropic API is unreachable: claude was still retrying after %v; stopped", m.cfg.RetryCutoff)
		if m.lastRetryErr != "" {
			msg += " (last error: " + m.lastRetryErr + ")"
		}
		return m.done(event.OutcomeError, x.Code, msg)
	}
	if !m.initSeen && x.Code != 0 && refusedSessionFlag(m.cfg.Resume, x.Stderr, m.held) {
		return step{Done: true, Swap: true, Held: m.flush(), Stderr: briefly(x.Stderr), Outcome: Outcome{Outcome: event.OutcomeError, ExitCode: x.Code}}
	}
	switch {
	case x.Code == 0 && m.result != nil && !m.result.IsError && !m.errorEmitted:
		return m.done(event.OutcomeSuccess, 0, "")
	case m.errorEmitted:
		// The translator or the reader already said what went wrong.
		return m.done(event.OutcomeError, x.Code, "")
	case x.Code != 0:
		return m.done(event.OutcomeError, x.Code, exitMessage(x))
	}
	return m.done(event.OutcomeError, x.Code, "claude ended without a result")
}

// done ends the attempt: the held events, then msg as an error if any.
func (m *machine) done(o event.Outcome, code int, msg string) step {
	s := step{Done: true, Emit: m.flush(), Outcome: Outcome{Outcome: o, ExitCode: code}}
	if msg != "" {
		s.Emit = append(s.Emit, errorEvent(msg))
	}
	return s
}

// exitMessage words a failed exit.
func exitMessage(x childExit) string {
	msg := fmt.Sprintf("claude exited with status %d", x.Code)
	if x.Code < 0 {
		sig := x.Signal
		if sig == "" {
			sig = "unknown signal"
		}
		msg = "claude was killed: " + sig
	}
	if s := briefly(x.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// refusedSessionFlag reports whether claude refused the session flag: "No
// conversation found" for --resume (on stderr, and in a result's errors),
// "already in use" for --session-id.
func refusedSessionFlag(resume bool, stderr string, held []event.Event) bool {
	phrase := "already in use"
	if resume {
		phrase = "No conversation found"
	}
	if strings.Contains(stderr, phrase) {
		return true
	}
	for _, e := range held {
		if strings.Contains(string(e.Data), phrase) {
			return true
		}
	}
	return false
}

func errorEvent(msg string) event.Event {
	return event.New(event.Error, event.ErrorData{Message: msg})
}

// briefly keeps the last lines of s, at most 1 KiB, on one line each.
func briefly(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1024 {
		s = s[len(s)-1024:]
		for len(s) > 0 && !utfStart(s[0]) {
			s = s[1:]
		}
		s = "…" + s
	}
	return s
}

func utfStart(b byte) bool { return b&0xC0 != 0x80 }

func strconvQuote(s string) string { return strconv.Quote(capString(s, 64)) }
