// One-tap diagnosis prompts. Each asks the agent to look before it acts,
// to say what it found, and to ask before anything destructive.

const ask = 'Diagnose only: read, do not change anything. Report what you found, the likely cause, and the least destructive fix; ask me before running any mutating command or power verb.';

/** PRESETS are the diagnosis buttons above the composer. */
export const PRESETS = Object.freeze([
  {
    id: 'triage',
    label: 'Triage',
    text: `The devvm may be down or unhealthy. Triage it: first \`pve status\` for VM 102, then if it is running try \`ssh devvm uptime\`. If ssh works, check load, memory (free -m), disk (df -h), failed units (systemctl --failed), and the last errors in journalctl -p err -b --no-pager | tail -n 50. If ssh fails, say how (timeout, refused, auth) and run \`pve forensics\`. ${ask}`,
  },
  {
    id: 'oom',
    label: 'Memory/OOM',
    text: `Check the devvm for memory exhaustion: free -m, swap use, /proc/pressure/memory, the top memory users (ps aux --sort=-rss | head -n 15), and OOM-killer activity in journalctl -k -b --no-pager | grep -iE 'out of memory|oom' | tail -n 30. Say which process is to blame and whether it is still growing. ${ask}`,
  },
  {
    id: 'disk',
    label: 'Disk',
    text: `Check the devvm's disks: df -h and df -i, which directories grew (du -xh --max-depth=2 / 2>/dev/null | sort -h | tail -n 20), I/O pressure (/proc/pressure/io), read-only remounts or I/O errors in journalctl -k -b --no-pager | grep -iE 'i/o error|read-only|ext4|xfs' | tail -n 30. ${ask}`,
  },
  {
    id: 'services',
    label: 'Services',
    text: `Check the devvm's services: systemctl --failed, units stuck activating (systemctl list-jobs), the last restarts and errors of the failed ones (journalctl -u <unit> -b --no-pager | tail -n 40), and whether docker or other container runtimes answer. ${ask}`,
  },
  {
    id: 'qemu',
    label: 'QEMU wedged',
    text: `The VM may be wedged at the QEMU level (ssh hangs, console dead). Run \`pve status\` and \`pve forensics\` and read them: a lock in the config, vCPU threads stuck in D state, a monitor that does not answer, I/O stalls on storage, host memory pressure, hung-task messages. Tell me whether a reset (same QEMU process) is likely enough or a cycle (new QEMU process) is needed, and why. Do not run either without my approval.`,
  },
]);
