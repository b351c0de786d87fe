// Command mutate is `make mutate`: it checks that the tests catch the
// removal of each security check. It applies one one-line mutant at a time
// (mutants.go: a file, the original line, its replacement) to a scratch
// copy of that one file, handed to the go command through -overlay, and
// runs the mutant's own package's tests against it with a per-mutant
// timeout: its test binary is built once (the build is not timed), then
// the tests the mutant names run first and the whole package only if they
// pass. A mutant is killed when the tests fail, and its kill time is the
// tests' running time; one that passes them all survived. A kill by the
// whole package is confirmed by running the killing test alone. It prints each result, the kill ratio, the slowest kill and
// the survivors, and lists the equivalent mutants (never run) with why.
//
// It never writes to the source tree: the mutated file lives in a
// temporary directory that is removed at the end. It exits non-zero when a
// mutant survived, did not apply or compile, or the slowest kill took
// longer than -max-kill.
package main
