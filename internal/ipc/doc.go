// Package ipc owns the keyholder's Unix socket: creating it (directory made
// if missing, a stale socket replaced, mode 0660 before it is ever visible
// under its name), learning each caller's uid, gid and pid with SO_PEERCRED,
// serving HTTP/1.1 over it, the JSON shapes of the verb API, and the Go
// client the web uses to reach it.
//
// It must never listen on TCP, never remove a file that is not the socket it
// created, and never hand a connection to a handler without the caller's
// credentials: a connection whose credentials cannot be read is closed.
// It knows nothing about SSH or keys.
package ipc
