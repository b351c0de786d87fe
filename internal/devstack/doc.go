// Package devstack runs the whole of breakglass on one machine, on loopback
// only, for development and demos (`make run`): a simulated Proxmox host
// running the real pve-gate logic against a simulated VM, a simulated devvm,
// generated keys and pinned host keys in a temporary folder, the real
// keyholder and web binaries as separate processes, and an edge stand-in
// that sets the identity header the way the SSO proxy does.
//
// It is also the one stack builder of the tests (through
// internal/testing/stacktest): New builds the hosts and files without
// starting a binary, StartKeyholder and StartWeb start one each time they
// are called (a restart is another call, with its own extra environment),
// and each Process can be killed, signalled or read. Start is all of it
// plus the edge, for `make run` and the UI's end-to-end tests.
//
// It must never dial anything but loopback, and it removes every key it
// generated when it stops.
package devstack
