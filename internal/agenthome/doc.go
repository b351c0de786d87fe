// Package agenthome prepares, at web start, the web-owned folder the agent
// may read but not write (outside every HOME): the ssh config for `Host
// devvm`, a copy of the pinned known_hosts, and bin/ with `ssh`, `pve` and
// the Bash tool's shell prefix (sandbox.ShellName), each a symlink to the
// web binary itself. It also holds the `ssh` entry's code (SSHMain):
// OpenSSH takes ~ from the passwd entry, not $HOME, so the wrapper runs the
// real ssh with `-F <the config>` in front of the agent's arguments.
//
// It must never write a private key or an IdentityFile (the devvm key lives
// in the keyholder's agent), never weaken host key checking (the config
// pins the known_hosts copy with StrictHostKeyChecking yes), never run a
// shell, and never read the process environment itself (callers pass it).
// The wrapper is a convenience, not a boundary: the keyholder's agent is.
package agenthome
