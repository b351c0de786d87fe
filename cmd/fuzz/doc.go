// Command fuzz runs every fuzz target of the module for a while, a few at
// a time (`make fuzz`, and a short form in `make test`).
//
// go test -fuzz takes one target of one package per run, and most of a
// short run is go's start-up; so targets run side by side, each with its
// share of the cores as fuzzing workers. A target's failing input is saved
// by go under that package's testdata/fuzz/<target>/ and replays in every
// later `go test`. A run that fails without a failing input (the engine
// lost a worker on a starved machine) is tried once more; a real failure
// never is, and it stops the whole run.
package main
