// Package ui holds the operator's web page, built from ui/src (Svelte) into
// ui/dist and embedded here, so building the Go binary never needs npm.
//
// It owns the built files only: it serves nothing itself, never reads the
// environment, and never holds data from a session. The committed dist is
// checked against ui/src by `npm test` (scripts/check-dist.mjs).
package ui
