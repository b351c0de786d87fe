// Package sandbox confines the agent with Landlock. Go cannot act between
// fork and exec, so the confinement is applied by a launcher: the web
// binary re-executed (`web sandbox -- <program> <args…>`), which reads its
// Policy from the environment (PolicyVar), restricts itself and execs the
// program, which inherits the domain. The same launcher under the name
// ShellName is the claude CLI's CLAUDE_CODE_SHELL_PREFIX: each Bash tool
// command gets a second, nested domain (then `bash -c "$1"`), so a tool
// command can neither ptrace the CLI nor open its /proc/<pid>/fd/*.
//
// It owns the Policy (what the agent may read, execute, write and connect
// to), its encoding, the launchers' entry points (Main, ShellMain) and the
// report of what the kernel gives (Probe, Status: the Landlock ABI in
// effect, said in the log, /readyz, a metric and the UI).
//
// It must never widen a policy it was given, never run the program when a
// restriction the kernel supports fails (it exits 126 instead), never run a
// shell except ShellMain's `bash -c` of the one command it is handed, and
// never read the process environment itself (callers pass it). Where the
// kernel lacks Landlock or an ABI level it downgrades (best effort) and
// Status says so: it never pretends.
package sandbox
