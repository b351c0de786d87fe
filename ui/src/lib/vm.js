// What the VM sheet knows about the verbs (docs/pve-host.md), how it reads
// the VM's state from `qm status --verbose` output, and how the landing view
// reads the health ladder. Pure.

/**
 * VERBS is the fixed verb table, in display order. The server's GET /api/vm
 * answer is preferred; this table keeps the sheet usable when it fails.
 */
export const VERBS = Object.freeze([
  { name: 'status', mutating: false, group: 'look', label: 'Status', what: 'Reads the VM state (qm status). Changes nothing.' },
  { name: 'forensics', mutating: false, group: 'look', label: 'Forensics', what: 'Collects read-only evidence from the Proxmox host: VM config and lock, QEMU threads, monitor, memory pressure, storage, kernel OOM and hung-task messages. Changes nothing.' },
  { name: 'screenshot', mutating: false, group: 'look', label: 'Screenshot', what: "Shows the VM's screen: kernel panics, emergency-mode prompts, GRUB, fsck questions. Changes nothing." },
  { name: 'console', mutating: false, group: 'look', label: 'Console', what: 'Listens to the serial console for 3 seconds and shows what the guest prints. Types nothing.' },
  { name: 'guest', mutating: false, group: 'look', label: 'Guest agent', what: 'Asks the QEMU guest agent inside the VM: is the OS alive, its disks and network. Changes nothing.' },
  { name: 'tasks', mutating: false, group: 'look', label: 'Tasks', what: "The VM's recent Proxmox tasks (backups, migrations) and its lock. Changes nothing." },
  { name: 'reset', mutating: true, group: 'act', label: 'Reset', what: 'Presses the reset button: the guest reboots at once, without a clean shutdown; unsaved data in the guest is lost. Fixes a hung guest kernel.' },
  { name: 'stop', mutating: true, group: 'act', label: 'Stop', what: 'Hard stop: kills the QEMU process, like pulling the power cord. The VM stays off until started.' },
  { name: 'start', mutating: true, group: 'act', label: 'Start', what: 'Starts the VM if it is stopped.' },
  { name: 'cycle', mutating: true, group: 'act', label: 'Cycle', what: 'Hard stop, then start once stopped: a fresh QEMU process. Slower and harsher than reset; fixes a wedged QEMU (stuck I/O, dead monitor).' },
  { name: 'unlock', mutating: true, group: 'act', label: 'Unlock', what: 'Removes a stale Proxmox lock (a backup or snapshot that died) that keeps the VM from starting.' },
  { name: 'guest-exec', mutating: true, group: 'act', label: 'Run in guest…', takesArgs: true, what: 'Runs one command inside the VM through its guest agent, as root, with no shell: each field is one argument.' },
]);

/** GROUPS are the VM sheet's two groups, in order. */
export const GROUPS = Object.freeze([
  { name: 'look', label: 'Look' },
  { name: 'act', label: 'Act' },
]);

/** grouped splits a verb list into GROUPS; a verb of no group is acted. */
export function grouped(list) {
  return GROUPS.map((g) => ({
    ...g,
    verbs: list.filter((v) => (v.group ?? (v.mutating ? 'act' : 'look')) === g.name),
  }));
}

/** ARGV limits, as the server checks them. */
export const MAX_ARGS = 16;
export const MAX_ARG_BYTES = 512;
export const MAX_ARGV_BYTES = 4096;

/**
 * checkArgv returns '' when argv may be sent, else why not: 1 to 16
 * arguments, each at most 512 bytes and 4 KiB in all, no NUL, a command.
 */
export function checkArgv(argv) {
  if (!Array.isArray(argv) || argv.length === 0) return 'Enter the command to run.';
  if (argv.length > MAX_ARGS) return `At most ${MAX_ARGS} arguments.`;
  if (typeof argv[0] !== 'string' || argv[0] === '') return 'The command (the first field) is empty.';
  const enc = new TextEncoder();
  let total = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (typeof a !== 'string') return `Argument ${i + 1} is not text.`;
    if (a.includes('\0')) return `Argument ${i + 1} holds a NUL character.`;
    const n = enc.encode(a).length;
    if (n > MAX_ARG_BYTES) return `Argument ${i + 1} is longer than ${MAX_ARG_BYTES} bytes.`;
    total += n;
  }
  if (total > MAX_ARGV_BYTES) return `The arguments are longer than ${MAX_ARGV_BYTES} bytes in all.`;
  return '';
}

/**
 * RUNGS are the health ladder's rungs, top to bottom: each names the field
 * of GET /api/vm/health and what is still possible when it is the first
 * one broken.
 */
export const RUNGS = Object.freeze([
  { key: 'pve', label: 'Proxmox host', broken: 'The Proxmox host does not answer: no VM control is possible from here. Check the host or the network to it.' },
  { key: 'vm', label: 'VM', broken: 'The VM is not running. Look at Tasks for a lock (Unlock clears a stale one), then Start it.' },
  { key: 'guest_agent', label: 'Guest agent', broken: "The guest OS does not answer its agent. Look at the Screenshot and the Console (a panic? a prompt?); then Reset, or Cycle if QEMU itself is stuck." },
  { key: 'ssh', label: 'SSH', broken: 'SSH to the devvm fails but the guest lives: look at the Console and Screenshot, then Run in guest (restart sshd, free disk space) rather than a reset.' },
]);

/**
 * ladder reads a health answer into rungs { key, label, ok, detail } and the
 * first broken rung's advice ('' when all answer).
 */
export function ladder(h) {
  const health = h && typeof h === 'object' ? h : {};
  const vm = health.vm && typeof health.vm === 'object' ? health.vm : {};
  const text = (x) => (typeof x === 'string' ? x : '');
  const rungs = RUNGS.map((r) => {
    const v = health[r.key] && typeof health[r.key] === 'object' ? health[r.key] : {};
    if (r.key === 'vm') {
      const state = text(vm.state) || 'unknown';
      const lock = text(vm.lock);
      return { key: r.key, label: r.label, ok: state === 'running', detail: state + (lock ? ` · locked (${lock})` : '') };
    }
    const ok = v.ok === true;
    let detail = ok ? 'answers' : text(v.error) || 'no answer';
    if (r.key === 'pve' && ok && typeof v.ms === 'number') detail = `answers in ${v.ms} ms`;
    return { key: r.key, label: r.label, ok, detail };
  });
  const first = rungs.find((r) => !r.ok);
  let advice = first ? RUNGS.find((r) => r.key === first.key).broken : '';
  if (first && first.key === 'vm' && text(vm.lock) && text(vm.state) !== 'stopped') {
    advice = `The VM is locked (${text(vm.lock)}): look at Tasks; if nothing runs any more, Unlock it. Never cycle a VM that is only locked.`;
  }
  return { rungs, first: first ? first.key : '', advice };
}

/**
 * verbList merges the server's verb list with the local table: the server
 * says which verbs exist and which mutate; the table gives labels and words.
 * A verb the table does not know is shown with its bare name, and a
 * mutating flag missing from the server is taken as true (safer).
 */
export function verbList(server) {
  const list = server && Array.isArray(server.verbs) ? server.verbs : null;
  if (!list || list.length === 0) return VERBS.slice();
  return list
    .filter((v) => v && typeof v.name === 'string' && v.name !== '')
    .map((v) => {
      const known = VERBS.find((k) => k.name === v.name);
      const mutating = typeof v.mutating === 'boolean' ? v.mutating : true;
      return known ? { ...known, mutating } : { name: v.name, mutating, label: v.name, what: '' };
    });
}

/**
 * parseStatus reads the VM state from `qm status <vmid> --verbose` output:
 * qmpstatus (what QEMU itself says, e.g. paused) wins over status. Returns
 * 'running', 'stopped', 'paused', another word qm printed, or 'unknown'.
 */
export function parseStatus(output) {
  const text = typeof output === 'string' ? output : '';
  const qmp = /^\s*qmpstatus:\s*([a-z-]+)\s*$/m.exec(text);
  if (qmp) return qmp[1];
  const st = /^\s*status:\s*([a-z-]+)\s*$/m.exec(text);
  return st ? st[1] : 'unknown';
}

/** expectedAfter is the state a mutating verb should leave the VM in. */
export function expectedAfter(verb) {
  switch (verb) {
    case 'reset':
    case 'start':
    case 'cycle':
      return 'running';
    case 'stop':
      return 'stopped';
    default:
      return null;
  }
}

/** SETTLE_TRIES and SETTLE_EVERY_MS bound how long the sheet re-reads status. */
export const SETTLE_TRIES = 15;
export const SETTLE_EVERY_MS = 2000;

/**
 * settled says whether re-reading status after `verb` can stop: the VM
 * reached the expected state, or the tries ran out.
 */
export function settled(verb, state, tries) {
  if (tries >= SETTLE_TRIES) return true;
  const want = expectedAfter(verb);
  if (want === null) return true;
  return state === want;
}
