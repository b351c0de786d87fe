// Package devvmsim is a devvm double for tests and the local stack: an SSH
// server (github.com/gliderlabs/ssh) on a loopback port with a given host
// key, which lets in one user with one public key and runs each session's
// command, returning its output and exit status. It forwards the client's
// agent into the command when the client asks (ssh -A), so tests can drive
// an agent onward from the "devvm". It can be made unreachable (Reachable)
// while the simulated VM's guest agent lives, for the recovery ladder.
//
// It stands in for a real host's login shell, so it runs commands with
// /bin/sh -c in a private working directory; that is acceptable in this
// double only and must never be copied into the keyholder or the web. It
// must never listen on anything but loopback, accept passwords, keyboard
// interactive or any key but the configured one, or allow port forwarding.
package devvmsim
