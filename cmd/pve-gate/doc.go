// Command pve-gate is the forced command of breakglass's PVE key in root's
// authorized_keys on the Proxmox host. It runs one whitelisted verb from
// SSH_ORIGINAL_COMMAND against one VM and exits with qm's status; see
// docs/pve-host.md for installing it and internal/pvegate for the logic.
//
// It must never run a shell, take anything but the verb name (and
// guest-exec's argv, decoded and checked again by internal/verbs, and run
// only with --allow-guest-exec) from the request, or read any environment variable besides SSH_ORIGINAL_COMMAND and
// SSH_CONNECTION; the commands it runs get a fixed environment.
package main
