// Package verbs owns the one table of verbs that breakglass can run against
// the Proxmox VM: their names, whether they change the VM, their request and
// output caps, and the qm invocations behind them. pve-gate, the keyholder
// and the web all parse verbs here and nowhere else.
//
// guest-exec is the one verb with arguments: an argv checked by
// ValidateArgs (1 to 16 arguments, each at most 512 bytes, 4 KiB in all,
// valid UTF-8, no NUL). It travels to pve-gate on the SSH command line as
// `guest-exec <base64url of the argv's JSON array>` (EncodeLine, ParseLine),
// the one canonical byte form of a verb and its argv.
//
// It must never accept a name that is not byte-for-byte in the table: no
// trimming, no case folding, no arguments but guest-exec's argv, and that
// only in canonical form. It does no I/O.
package verbs
