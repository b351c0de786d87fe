// Package pvesim is a simulated Proxmox host for tests and the local stack:
// an in-process SSH server (github.com/gliderlabs/ssh) on loopback that
// accepts exactly one public key, presents a given host key, and runs the
// real pve-gate logic (internal/pvegate) on each session's command against a
// simulated VM whose state changes with the verbs. It counts accepted TCP
// connections so tests can prove no SSH connection was opened, and it can
// hold the VM's commands (a wedged qm) and pad their output. For the
// recovery ladder the VM has a screen (its text drawn into the PPM QEMU's
// screendump would write: the boot log, or a panic), a serial console
// socket, a guest agent that can be killed, a task list and a lock; its
// sshd can die while the guest agent lives (SSHUp, for the devvm double).
//
// It must never run a real command (it writes only the screen dump the gate
// asks for, into the gate's own folder), listen on anything but a loopback
// address, accept any key but the configured one, or grant a pty, a shell,
// port forwarding, agent forwarding, X11 or subsystems: a session may only
// exec a command, which the gate then checks as the real host would.
package pvesim
