// Package sshagent is the keyholder's restricted ssh-agent: it serves the
// ssh-agent protocol (draft-miller-ssh-agent, OpenSSH PROTOCOL.agent) on a
// Unix socket and signs with the devvm key only for live logins to the
// pinned devvm as the configured user.
//
// It owns: the accept loop on agent.sock, one agent value per connection
// holding that connection's session-bind@openssh.com state, the sign policy
// (bind to a pinned Ed25519 host key with a valid signature, not forwarded,
// a well-formed RFC 4252 §7 userauth request for the bound session and the
// configured user), the bounds on every request, the audit line and metric
// for every decision, and loading the pinned devvm host keys from a
// known_hosts file.
//
// It must never: hold or list any key but the devvm key; add, remove, lock
// or unlock keys; answer any request outside its fixed table; log key
// material, signatures or session ids; sign on a connection that was not
// bound, was bound for forwarding, or whose bind failed; listen on TCP; run a
// subprocess. It does not use the standard log package and changes no
// global state.
package sshagent
