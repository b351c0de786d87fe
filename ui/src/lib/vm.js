// What the VM sheet knows about the six power verbs (DESIGN §3), and how it
// reads the VM's state from `qm status --verbose` output. Pure.

/**
 * VERBS is the fixed verb table, in display order. The server's GET /api/vm
 * answer is preferred; this table keeps the sheet usable when it fails.
 */
export const VERBS = Object.freeze([
  { name: 'status', mutating: false, label: 'Status', what: 'Reads the VM state (qm status). Changes nothing.' },
  { name: 'forensics', mutating: false, label: 'Forensics', what: 'Collects read-only evidence from the Proxmox host: VM config and lock, QEMU threads, monitor, memory pressure, storage, kernel OOM and hung-task messages. Changes nothing.' },
  { name: 'reset', mutating: true, label: 'Reset', what: 'Presses the reset button: the guest reboots at once, without a clean shutdown; unsaved data in the guest is lost. Fixes a hung guest kernel.' },
  { name: 'stop', mutating: true, label: 'Stop', what: 'Hard stop: kills the QEMU process, like pulling the power cord. The VM stays off until started.' },
  { name: 'start', mutating: true, label: 'Start', what: 'Starts the VM if it is stopped.' },
  { name: 'cycle', mutating: true, label: 'Cycle', what: 'Hard stop, then start once stopped: a fresh QEMU process. Slower and harsher than reset; fixes a wedged QEMU (stuck I/O, dead monitor).' },
]);

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
