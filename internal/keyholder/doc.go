// Package keyholder owns the keyholder's verb path: checking its
// configuration at start-up (key files present, parseable and not readable
// by group or others; a known_hosts nobody else can write, pinning every
// configured host; IP addresses, never names), running a whitelisted verb
// on the Proxmox host over SSH with the PVE key (host key verified against
// known_hosts, the verb name as the only command, or guest-exec's line of
// verbs.EncodeLine with its checked argv), serialising mutating verbs,
// bounding how many verbs run at once, each run by a timeout and its output
// by its verb's cap (a screenshot's PNG, carried as base64 with its content
// type, is refused above its cap, never cut), and answering the verb API of keyholder.sock with one
// audit line and metrics per request.
//
// It must never run anything but a verb verbs.Parse accepted (with args only
// for the verb that takes them), never open an
// SSH connection for a refused request, never accept an unknown host key,
// never log or return key material, never start a subprocess, and never
// listen on TCP. It reads no environment: cmd/keyholder passes a Config.
package keyholder
