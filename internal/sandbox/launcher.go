package sandbox

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExitCannotRun is the launchers' exit status when they did not run the
// program (as a shell's "cannot execute").
const ExitCannotRun = 126

// Main is the launcher: cmd/web calls it when its first argument is
// Subcommand, with args = [web, "sandbox", "--", program, args…]. It reads
// the Policy from environ (PolicyVar), confines itself and replaces itself
// with program (an absolute path; no PATH lookup, no shell), passing
// environ unchanged. It returns only when it did not run the program.
func Main(args, environ []string, stderr io.Writer) int {
	if len(args) < 4 || args[1] != Subcommand || args[2] != "--" {
		fmt.Fprintf(stderr, "breakglass sandbox: usage: %s -- <program> [args…]\n", Subcommand)
		return ExitCannotRun
	}
	prog := args[3]
	if !filepath.IsAbs(prog) {
		fmt.Fprintf(stderr, "breakglass sandbox: %q is not an absolute path\n", prog)
		return ExitCannotRun
	}
	return confineAndExec(prog, args[3:], environ, stderr)
}

// ShellMain is the Bash tool's shell prefix (CLAUDE_CODE_SHELL_PREFIX):
// cmd/web calls it when it is invoked as ShellName, with args =
// [agent-shell, "<command>"], the one argument the claude CLI passes. It
// puts itself in a new Landlock domain nested in the CLI's (the same
// policy, from environ), then runs `bash -c "<command>"`. In the nested
// domain the command cannot ptrace the CLI, open its /proc/<pid>/fd/*
// (such as the CLI's stdin), or signal it.
func ShellMain(args, environ []string, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintf(stderr, "%s: expected exactly one argument (the command), got %d\n", ShellName, len(args)-1)
		return ExitCannotRun
	}
	return confineAndExec(Shell, []string{"bash", "-c", args[1]}, environ, stderr)
}

// confineAndExec applies the policy in environ and execs prog.
func confineAndExec(prog string, argv, environ []string, stderr io.Writer) int {
	p, err := Decode(lookup(environ, PolicyVar))
	if err != nil {
		fmt.Fprintf(stderr, "breakglass sandbox: not running %s: %v\n", prog, err)
		return ExitCannotRun
	}
	// The seccomp filter and the exec happen on this one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, err := Restrict(p); err != nil {
		fmt.Fprintf(stderr, "breakglass sandbox: not running %s: %v\n", prog, err)
		return ExitCannotRun
	}
	// WARNING: after Restrict, which sets no_new_privs on every thread
	// (set here too, for when Landlock is missing); seccomp needs it.
	// TestLauncherConfines/connect-other-port-mptcp guards the filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(stderr, "breakglass sandbox: not running %s: no_new_privs: %v\n", prog, err)
		return ExitCannotRun
	}
	if err := denyMPTCP(); err != nil {
		fmt.Fprintf(stderr, "breakglass sandbox: not running %s: %v\n", prog, err)
		return ExitCannotRun
	}
	err = syscall.Exec(prog, argv, environ)
	fmt.Fprintf(stderr, "breakglass sandbox: exec %s: %v\n", prog, err)
	return ExitCannotRun
}

// lookup returns the last value of key in environ.
func lookup(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if val, ok := strings.CutPrefix(kv, key+"="); ok {
			v = val
		}
	}
	return v
}
