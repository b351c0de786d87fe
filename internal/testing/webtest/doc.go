// Package webtest drives a running web binary from tests the way a browser
// does: it attaches to a session's SSE stream, reads events until a turn's
// done, and looks for the processes a turn left behind.
//
// It is imported by tests only and must never be used by a binary.
package webtest
