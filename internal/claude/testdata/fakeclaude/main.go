// Command fakeclaude stands in for the claude CLI only where the real one
// cannot produce the behaviour under test: output that is not stream-json,
// and a process that ignores SIGINT.
// Its first argument after the program name is ignored; the mode comes from
// FAKECLAUDE_MODE (passed through claude.Turn.Env).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	mode := ""
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "FAKECLAUDE_MODE="); ok {
			mode = v
		}
	}
	switch mode {
	case "garbage":
		fmt.Println(`{"type":"system","subtype":"init","session_id":"x","model":"m","tools":[]}`)
		fmt.Println("Segmentation fault (core dumped)")
		fmt.Println("{not json")
		os.Exit(0)
	case "garbage-exit":
		fmt.Println("<html>proxy error</html>")
		fmt.Fprintln(os.Stderr, "fatal: something broke")
		os.Exit(3)
	case "ignore-sigint":
		// A CLI wedged so badly it ignores SIGINT: only SIGKILL ends it.
		signal.Ignore(syscall.SIGINT)
		fmt.Println(`{"type":"system","subtype":"init","session_id":"x","model":"m","tools":[]}`)
		for {
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintln(os.Stderr, "fakeclaude: unknown mode")
		os.Exit(2)
	}
}
