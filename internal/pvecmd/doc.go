// Package pvecmd is the `pve` command on the agent's PATH (docs/web.md, Turns and the agent):
// `pve status|forensics|reset|stop|start|cycle`. It sends the verb to the
// web's agent endpoint with the per-turn token it is given, prints the
// verb's output, and exits with the remote exit code, or with one of its own
// codes when the verb did not run (refused, denied by the operator, approval
// expired, timed out, keyholder down, token rejected).
//
// It must never read the process environment itself (the caller passes a
// getenv), never run a shell, never send anything before the verb passed
// verbs.Parse, never go through a proxy or follow a redirect (the token goes
// to the configured web and nowhere else), and never print the token.
package pvecmd
