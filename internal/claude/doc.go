// Package claude runs one Claude Code turn as a subprocess (`claude -p …
// --output-format stream-json`) and translates its stream-json lines into
// transcript events (package event).
//
// It owns the argv, the allowlisted environment, the process group, cancel
// and timeout, the watchdogs (no system/init; API retries past a cutoff),
// and the Translator (a pure type fed one line at a time). Processes a tool
// started in their own session are found by the turn's mark (MarkVar in
// their environment) and killed when the turn ends.
//
// It must never run a shell, never pass the parent's environment through
// unfiltered (CLAUDECODE and secrets never reach claude), never let a line
// of claude's output panic or grow without bound, and never let a child
// outlive its turn. It emits every event of a turn except user and done,
// which the session manager owns.
package claude
