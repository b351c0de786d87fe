// Package systemtest holds the whole-system tests of breakglass: fault and
// load tests that build the real keyholder and web binaries, run them as
// processes on loopback against the doubles (pvesim for the Proxmox host,
// devvmsim for the devvm, apidouble behind the real claude CLI), break one
// part at a time (SIGKILL, a blackholed host, a closed port, a wedged
// model, a full disk) and check what the operator sees. docs/reliability.md
// records what they prove and the figures they measure.
//
// The package has no code outside its tests. Its tests must never dial
// anything but loopback (the real default hosts are always overridden),
// never use sleeps as synchronisation, and never leave a process they
// started running. BREAKGLASS_SOAK=1 (make soak) runs the long forms of
// the load tests.
package systemtest
