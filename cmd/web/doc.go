// Command web is breakglass's web process (docs/web.md): the operator's page
// and API, sessions with claude turns streamed over SSE, the power verbs
// relayed to the keyholder, and /metrics on a separate listener. Invoked as
// `ssh` or `pve` (the agent's PATH holds symlinks to this binary), it is
// the agent's ssh wrapper or its `pve` command instead.
//
// Only this package reads the environment. It never holds a private key and
// never listens for metrics on the operator's listener.
package main
