// Package event owns the transcript vocabulary of docs/web.md (Events) as it appears
// on the wire (SSE `event:` names and `data:` JSON) and in events.jsonl: the
// typed event names, the data of each, and the Event record with its id.
//
// It must never carry behaviour: no I/O, no goroutines. The claude package
// produces these events, the session package stores and fans them out, the
// api package writes them, and the UI folds them.
package event
