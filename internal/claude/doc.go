// Package claude runs one Claude Code turn as a subprocess (`claude -p …
// --output-format stream-json`) and translates its stream-json lines into
// transcript events (package event).
//
// It owns the argv, the allowlisted environment, the process group, cancel
// and timeout. It must never run a shell, never pass the parent's
// environment through unfiltered, and never let a child outlive its turn.
package claude
