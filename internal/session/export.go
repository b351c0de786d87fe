package session

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"breakglass/internal/event"
)

// WriteJSON writes snap as one JSON object: the session's fields and
// "events", every event exactly as its events.jsonl line holds it
// (`{"id","event","time","data"}`), so it reads back to the same log. It
// returns an error when the log could not be read to its end.
func WriteJSON(w io.Writer, snap *Snapshot) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	head, err := json.Marshal(snap.Info)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	// The Info object with "events" added as its last field.
	bw.Write(head[:len(head)-1])
	bw.WriteString(`,"events":[`)
	first := true
	for e := range snap.Events() {
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %d: %w", e.ID, err)
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.WriteString("\n")
		bw.Write(line)
	}
	if err := snap.Err(); err != nil {
		return err
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// Export is what WriteJSON writes, for reading it back.
type Export struct {
	Info
	Events []event.Event `json:"events"`
}

// markdown data shapes: the event package's, with the fields later events
// may carry (who decided an approval, its arguments) read when present.
type (
	mdApproval struct {
		ApprovalID string   `json:"approval_id"`
		Verb       string   `json:"verb"`
		Args       []string `json:"args"`
		State      string   `json:"state"`
		By         string   `json:"by"`
	}
	mdPermission struct {
		RequestID string          `json:"request_id"`
		Tool      string          `json:"tool"`
		Input     json.RawMessage `json:"input"`
		State     string          `json:"state"`
		By        string          `json:"by"`
	}
)

// WriteMarkdown writes snap as an incident record: the operator's prompts
// (who, when), the agent's text, every command with its output, every verb
// (who, when, exit code, output), every approval (who decided, when),
// errors and how each turn ended. exported is the time written in its
// header. It returns an error when the log could not be read to its end.
func WriteMarkdown(w io.Writer, snap *Snapshot, exported time.Time) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	md := &mdWriter{w: bw}
	in := snap.Info
	titleText := in.Title
	if titleText == "" {
		titleText = "Untitled session"
	}
	fmt.Fprintf(bw, "# Incident record: %s\n\n", oneLine(titleText))
	fmt.Fprintf(bw, "- Session: `%s`\n", in.ID)
	fmt.Fprintf(bw, "- Created: %s\n", stamp(in.CreatedAt))
	fmt.Fprintf(bw, "- Events: %d, the last at %s\n", in.LastEventID, stamp(in.UpdatedAt))
	if in.Archived {
		bw.WriteString("- Archived\n")
	}
	fmt.Fprintf(bw, "- Exported: %s\n", stamp(exported))
	for e := range snap.Events() {
		md.event(e)
	}
	if err := snap.Err(); err != nil {
		return err
	}
	md.flushText()
	return bw.Flush()
}

// mdWriter renders events one by one, gathering streamed text.
type mdWriter struct {
	w    *bufio.Writer
	text strings.Builder
	at   time.Time
}

func (m *mdWriter) event(e event.Event) {
	if e.Type == event.Text {
		var d event.TextData
		if json.Unmarshal(e.Data, &d) == nil {
			if m.text.Len() == 0 {
				m.at = e.Time
			}
			m.text.WriteString(d.Delta)
		}
		return
	}
	m.flushText()
	w := m.w
	switch e.Type {
	case event.User:
		var d event.UserData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n## %s — prompt by %s\n\n", stamp(e.Time), who(d.Actor))
		quote(w, d.Text)
	case event.Session:
		var d event.SessionData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n_%s: agent started (model %s)_\n", stamp(e.Time), orDash(d.Model))
	case event.Status:
		var d event.StatusData
		_ = json.Unmarshal(e.Data, &d)
		if d.State == event.StateRetrying {
			fmt.Fprintf(w, "\n_%s: the API is retrying (attempt %d of %d): %s_\n", stamp(e.Time), d.Attempt, d.MaxRetries, orDash(d.Error))
		}
	case event.Tool:
		var d event.ToolData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n**Command** (%s) at %s:\n\n", orDash(d.Name), stamp(e.Time))
		fence(w, d.Input)
	case event.ToolResult:
		var d event.ToolResultData
		_ = json.Unmarshal(e.Data, &d)
		label := "Output"
		if d.IsError {
			label = "Output (error)"
		}
		fmt.Fprintf(w, "\n%s:\n\n", label)
		fence(w, d.Output)
	case event.Result:
		var d event.ResultData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n_%s: agent finished (%s, %d steps, %.1f s, $%.4f)_\n", stamp(e.Time), orDash(d.Subtype), d.NumTurns, float64(d.DurationMS)/1000, d.TotalCostUSD)
	case event.Verb:
		var d event.VerbData
		_ = json.Unmarshal(e.Data, &d)
		exit := "no exit code"
		if d.ExitCode != nil {
			exit = fmt.Sprintf("exit %d", *d.ExitCode)
		}
		fmt.Fprintf(w, "\n**Verb `%s`** by %s at %s: %s, %d ms\n", oneLine(d.Verb), who(d.Actor), stamp(e.Time), exit, d.DurationMS)
		if len(d.Args) > 0 {
			// The argv as JSON: one string per argument, unambiguous.
			b, _ := json.Marshal(d.Args)
			fmt.Fprintf(w, "\nArguments: `%s`\n", oneLine(string(b)))
		}
		if d.Image != "" {
			fmt.Fprintf(w, "\nScreenshot: `images/%s` in the session's folder\n", oneLine(d.Image))
		}
		if d.Error != "" {
			fmt.Fprintf(w, "\nError: %s\n", oneLine(d.Error))
		}
		if d.Output != "" {
			w.WriteString("\n")
			fence(w, d.Output)
		}
	case event.Approval:
		var d mdApproval
		_ = json.Unmarshal(e.Data, &d)
		args := ""
		if len(d.Args) > 0 {
			args = " " + strings.Join(d.Args, " ")
		}
		by := ""
		if d.By != "" {
			by = " by " + who(d.By)
		}
		fmt.Fprintf(w, "\n**Approval** `%s` (%s): %s%s at %s\n", oneLine(d.Verb+args), oneLine(d.ApprovalID), orDash(d.State), by, stamp(e.Time))
	case "permission":
		var d mdPermission
		_ = json.Unmarshal(e.Data, &d)
		by := ""
		if d.By != "" {
			by = " by " + who(d.By)
		}
		fmt.Fprintf(w, "\n**Permission** for %s: %s%s at %s\n\n", orDash(d.Tool), orDash(d.State), by, stamp(e.Time))
		fence(w, string(d.Input))
	case event.Error:
		var d event.ErrorData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n**Error** at %s: %s\n", stamp(e.Time), oneLine(d.Message))
	case event.Done:
		var d event.DoneData
		_ = json.Unmarshal(e.Data, &d)
		fmt.Fprintf(w, "\n_%s: turn ended: %s (exit %d, %.1f s)_\n", stamp(e.Time), orDash(string(d.Outcome)), d.ExitCode, float64(d.DurationMS)/1000)
	default:
		// An event this release does not know: kept whole.
		fmt.Fprintf(w, "\n**%s** at %s:\n\n", oneLine(string(e.Type)), stamp(e.Time))
		fence(w, string(e.Data))
	}
}

// flushText writes the agent's text gathered so far.
func (m *mdWriter) flushText() {
	if m.text.Len() == 0 {
		return
	}
	fmt.Fprintf(m.w, "\n**Agent** at %s:\n\n%s\n", stamp(m.at), strings.TrimRight(m.text.String(), "\n"))
	m.text.Reset()
}

// fence writes s in a code block whose fence is longer than any run of
// backticks in s, so nothing in s can end it.
func fence(w *bufio.Writer, s string) {
	n, run := 3, 0
	for _, r := range s {
		if r == '`' {
			run++
			n = max(n, run+1)
		} else {
			run = 0
		}
	}
	f := strings.Repeat("`", n)
	w.WriteString(f + "\n" + strings.TrimRight(s, "\n") + "\n" + f + "\n")
}

// quote writes s as a Markdown block quote.
func quote(w *bufio.Writer, s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		w.WriteString("> " + line + "\n")
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func who(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return oneLine(s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return oneLine(s)
}

// oneLine keeps a value on its line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
