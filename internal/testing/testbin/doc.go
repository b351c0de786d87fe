// Package testbin is what tests need to run the real binaries: the pinned
// claude CLI (Claude), and the project's own commands built once per test
// process (Build).
//
// It must never fall back to a claude found on PATH: the tests hold the
// pinned version's behaviour.
package testbin
