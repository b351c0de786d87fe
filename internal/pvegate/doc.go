// Package pvegate owns the Proxmox host side of breakglass: the logic of
// pve-gate, the forced command of the PVE key in root's authorized_keys. It
// takes the SSH client's command (SSH_ORIGINAL_COMMAND), accepts it only if
// it is exactly one of the verbs of internal/verbs, and runs that verb's qm
// invocations for the one configured VM, or, for forensics and the recovery
// ladder's look verbs (screenshot, console, guest, tasks), fixed read-only
// steps of its own. guest-exec alone carries an argv, decoded and checked
// again with internal/verbs, run only when AllowGuestExec is set. The
// simulated Proxmox host (internal/testing/pvesim) runs this very code
// against a simulated VM through the Runner, FS and Locker seams.
//
// It must never run a shell, pass anything from the request to a command
// (guest-exec's checked argv after qm's "--" excepted), write to the VM's
// serial console, decode a screen dump larger than 4096×4096,
// use `--skiplock` or any qm option beyond the verb table, inherit the
// caller's environment into a command, run a mutating verb without the host
// lock, or let one hung command hold the gate past its timeout.
package pvegate
