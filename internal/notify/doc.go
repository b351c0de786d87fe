// Package notify tells the operator when he is needed while the page is
// closed (docs/notifications.md): Web Push (RFC 8030, payloads encrypted per
// RFC 8291 aes128gcm, VAPID per RFC 8292) to the browsers that subscribed,
// and optionally an ntfy topic. It owns the VAPID keys and the
// subscriptions (files 0600 under the sessions folder), the bounded
// delivery queue with its timeouts, retries and metric, each
// subscription's last delivery status, the /api/push routes, and the
// mapping from session events (an approval or permission waiting, a turn
// that ended with no client attached) and VM states to messages.
//
// It must never put the model's text, a command line, argv or command
// output into a message (what it sends leaves the pod: a verb or tool name,
// a VM state, a turn outcome and a link, nothing else); never block its
// caller (a full queue drops the message and counts it); never send to an
// endpoint that is not https to a public host name (http to a loopback
// address is allowed for tests), nor follow a push service's redirect; and
// never log a subscription's keys or its VAPID private key.
package notify
