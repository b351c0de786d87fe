// Package redteam is the agent confinement's red-team suite: the real web
// and keyholder binaries, the real claude CLI against the scripted
// Messages API double, Landlock enforced, and the web (so the agent) run
// as a user that is not root and has a passwd entry, as in the image.
// Each attack is one Bash tool call of the agent; the tests check that
// every one fails, that nothing the agent planted acts on the next turn,
// that the transcript replays unchanged after a web restart, and that what
// the agent is for (`ssh devvm`, `pve status`, a file in its work folder)
// still works from the same sandbox.
//
// It holds tests only, and the attacker's tool (package probe, copied into
// the session's work folder), so no attack depends on a debugger or
// compiler being installed.
package redteam
