// Command keyholder holds breakglass's private keys in their own container.
// It serves the verb API on $BREAKGLASS_SOCKET_DIR/keyholder.sock: the six
// whitelisted power verbs, run on the Proxmox host over SSH with the PVE key
// (internal/keyholder, internal/ipc). The devvm key is for the restricted
// ssh-agent on agent.sock (internal/sshagent).
//
// Configuration comes from the environment, read here and nowhere else. It
// refuses to start (one message naming the file, exit 1) on a missing or
// unreadable key, a key file readable by group or others, or a known_hosts
// without an entry for a configured host. It must never listen on TCP,
// start a subprocess, or log key material; TestDependencies keeps os/exec,
// profiling and the web's packages out of its build.
package main
