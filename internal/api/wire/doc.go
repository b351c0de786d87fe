// Package wire is the one shape of every answer of the web's HTTP surface
// (package api owns the routing and the authentication): the JSON writer,
// the error type with its stable machine-readable Code, the strict body
// reader, the authenticated Principal, and the Route a package hands to
// api to be mounted. Packages that serve routes (power, notify) and the
// clients of those routes (the `pve` command, the UI) speak it; it imports
// nothing of the web.
//
// It must never write an error body without a code, never write JSON
// without nosniff and no-store, and never read a body past its limit.
package wire
