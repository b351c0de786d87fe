// Package claude runs one Claude Code turn as a subprocess (`claude -p …
// --output-format stream-json`) and translates its stream-json lines into
// transcript events (package event).
//
// Three parts, each in its own file:
//   - child.go: the process wrapper. It starts claude in its own process
//     group with the argv and environment Runner.command builds (the one
//     place they are decided), owns its standard streams, reads stdout as
//     bounded lines, keeps stderr's tail, signals and reaps the group and
//     every process carrying the turn's mark (MarkVar), and leaves no
//     goroutine behind.
//   - machine.go: the turn state machine, pure: typed inputs (a translated
//     line, a watchdog tick, a stop, the exit) in; events, when to stop
//     claude, and the outcome out. Every rule (init watchdog, API-retry
//     cutoff, timeout vs cancel vs crash, is_error results, the session-flag
//     retry) is a table test that needs no process.
//   - translate.go: the Translator, fed one line at a time, which hands back
//     events and typed signals (init, answered, retrying, result, a
//     control request).
//   - control.go: the operator in the loop (docs/operator-loop.md): the
//     agent modes and their pure rule (Decide), the lines the web writes on
//     claude's stdin (the prompt, steering messages through Input, control
//     responses that never carry a rule), and the permission request and
//     answer that Turn.Permit exchanges with the session.
//   - confine.go: the confinement (Config.Sandbox): the session's own
//     home, tmp and work folders, the launcher in front of claude, the
//     shell prefix and the policy in its environment, the setting flags
//     that keep anything the agent wrote from being loaded, and claude's
//     stdin, a socketpair whose other end the web alone holds.
//
// runner.go wires them: Runner.Run with its turnLoop. The package owns its
// metrics (breakglass_stream_lines_total, breakglass_agent_cost_usd_total)
// on the Registerer it is given.
//
// It must never run a shell, never pass the parent's environment through
// unfiltered (CLAUDECODE and secrets never reach claude), never let a line
// of claude's output panic or grow without bound, and never let a child
// outlive its turn; with a Sandbox, never start claude outside it; never
// let a control request go unanswered, nor allow a tool call the session
// did not allow. It emits every event of a turn except user and done,
// which the session manager owns.
package claude
