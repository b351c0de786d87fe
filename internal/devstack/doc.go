// Package devstack runs the whole of breakglass on one machine, on loopback
// only, for development and demos (`make run`): a simulated Proxmox host
// running the real pve-gate logic against a simulated VM, a simulated devvm,
// generated keys and pinned host keys in a temporary folder, the real
// keyholder and web binaries as separate processes, and an edge stand-in
// that sets the identity header the way the SSO proxy does.
//
// It must never dial anything but loopback, and it removes every key it
// generated when it stops.
package devstack
