// Command probe is the red-team suite's attacker tool (internal/redteam):
// run by the agent from its work folder, it tries one thing and prints
// "ATTACK <what>: BLOCKED|SUCCEEDED|PLANTED[: detail]". A program of its
// own, built without the race detector, so each attack starts fast and
// depends on no debugger or compiler being installed.
//
// It is built by the suite's tests only and must never ship in an image.
package main
