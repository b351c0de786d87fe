// Package verbs owns the one table of power verbs that breakglass can run
// against the Proxmox VM: their names, whether they change the VM, and the
// qm invocations behind them. pve-gate, the keyholder and the web all parse
// verbs here and nowhere else.
//
// It must never accept a name that is not byte-for-byte in the table: no
// trimming, no case folding, no arguments. It does no I/O.
package verbs
