// Package agenthome prepares the agent's HOME at web start: the agent file
// in HOME/.claude/agents/, the ssh config for `Host devvm` in HOME/.ssh/,
// and HOME/bin with `ssh` and `pve` entries that are symlinks to the web
// binary itself. It also holds the `ssh` entry's code (SSHMain): OpenSSH
// takes ~ from the passwd entry, not $HOME, so the wrapper runs the real
// ssh with `-F HOME/.ssh/config` in front of the agent's arguments.
//
// It must never write a private key or an IdentityFile (the devvm key lives
// in the keyholder's agent), never weaken host key checking (the config
// pins BREAKGLASS_KNOWN_HOSTS with StrictHostKeyChecking yes), never run a
// shell, and never read the process environment itself (callers pass it).
// The wrapper is a convenience, not a boundary: the keyholder's agent is.
package agenthome
