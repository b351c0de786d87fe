// Package logtest captures the structured (hclog JSON) lines a component
// writes, for tests that assert on audit lines: what was logged, and that
// something was logged, without sleeping for it.
//
// It is imported by tests only and must never be used by a binary.
package logtest
