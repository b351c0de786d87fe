// Package vmwatch is the web's VM watch (docs/notifications.md): every
// BREAKGLASS_WATCH_SECONDS it runs the read-only `status` verb through the
// keyholder, reads the VM as running, stopped, locked or unreachable, and
// reports a change only once two readings in a row agree (one bad reading
// is not an outage). It keeps breakglass_vm_state{state} on the agreed
// state.
//
// It must never run any verb but `status`, never block on a change
// (OnChange must return at once; the notifier queues), and never let one
// slow reading pile up behind another: readings are sequential, each
// bounded by a timeout.
package vmwatch
