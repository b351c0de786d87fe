package claude

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/uuid"
)

// The real CLI against the scripted API double: what it asks the web
// about, and what each answer does (docs/operator-loop.md).

// outsideCommand writes a file outside the turn's folder: the CLI asks
// before running it.
func outsideCommand(t *testing.T) (cmd, file string) {
	file = filepath.Join(t.TempDir(), "written-outside")
	return "touch " + file + " && echo touched", file
}

func TestRealPermissionAllowed(t *testing.T) {
	cmd, file := outsideCommand(t)
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Bash(cmd)),
		apidouble.AfterToolResult(apidouble.Text("Done.")),
	})
	var asked []PermissionRequest
	permit := func(ctx context.Context, req PermissionRequest) PermissionAnswer {
		asked = append(asked, req)
		_, err := os.Stat(file)
		assert.ErrorIs(t, err, os.ErrNotExist, "nothing runs before the answer")
		return PermissionAnswer{Allow: true}
	}
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "touch it", Permit: permit})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	require.Len(t, asked, 1)
	assert.Equal(t, "Bash", asked[0].Tool)
	assert.Equal(t, cmd, asked[0].Display)
	assert.FileExists(t, file, "allowed: it ran")
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.Equal(t, "touched", results[0].Output, "its output streams as usual")
}

func TestRealPermissionDenied(t *testing.T) {
	cmd, file := outsideCommand(t)
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Bash(cmd)),
		apidouble.AfterToolResult(apidouble.Text("Understood.")),
	})
	permit := func(ctx context.Context, req PermissionRequest) PermissionAnswer {
		return PermissionAnswer{Message: "The operator denied this command: use /tmp instead"}
	}
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "touch it", Permit: permit})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	assert.NoFileExists(t, file, "denied: it never ran")
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.True(t, results[0].IsError)
	assert.Contains(t, results[0].Output, "use /tmp instead")
	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 2)
	require.Len(t, reqs[1].ToolResults(), 1)
	assert.Contains(t, reqs[1].ToolResults()[0].Text, "use /tmp instead", "the model reads the operator's note")
}

// A command that changes nothing (echo) is not asked about: the CLI's own
// rules let it run.
func TestRealPermissionReadOnlyCommandNotAsked(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Bash("echo just-looking")),
		apidouble.AfterToolResult(apidouble.Text("Seen.")),
	})
	permit := func(ctx context.Context, req PermissionRequest) PermissionAnswer {
		t.Errorf("asked about %q", req.Display)
		return PermissionAnswer{}
	}
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "look", Permit: permit})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.Equal(t, "just-looking", results[0].Output)
}

// A pending question ends with the turn: a cancel while the operator has
// not answered stops claude, Permit's context ends, and nothing runs.
func TestRealPermissionPendingWhenCancelled(t *testing.T) {
	cmd, file := outsideCommand(t)
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Bash(cmd)),
		apidouble.AfterToolResult(apidouble.Text("Done.")),
	})
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var ended sync.WaitGroup
	ended.Add(1)
	permit := func(pctx context.Context, req PermissionRequest) PermissionAnswer {
		defer ended.Done()
		cancel(ErrCancelled)
		<-pctx.Done()
		return PermissionAnswer{Message: "expired"}
	}
	out, _ := h.run(ctx, Turn{SessionID: uuid.New(), Prompt: "touch it", Permit: permit})
	ended.Wait()
	assert.Equal(t, event.OutcomeCancelled, out.Outcome)
	assert.NoFileExists(t, file)
	h.assertGroupsGone(t)
}

// Steering: a message sent while a tool runs reaches the model in the next
// request of the same turn, and the turn ends once, with one result.
func TestRealSteer(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Delay(time.Second), apidouble.Bash("echo first-step")),
		apidouble.AfterToolResult(apidouble.Text("Checked dmesg too.")),
	})
	in := NewInput()
	go func() {
		if h.double.WaitMessages(t.Context(), 1) == nil {
			assert.NoError(t, in.Steer("also check dmesg"))
		}
	}()
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "look around", Input: in})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	assert.Len(t, dataOf[event.ResultData](t, evs, event.Result), 1)
	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 2)
	assert.NotContains(t, requestText(reqs[0]), "also check dmesg")
	assert.Contains(t, requestText(reqs[1]), "also check dmesg", "the same turn's next request carries it")
	assert.ErrorIs(t, in.Steer("too late"), ErrInputClosed, "a finished turn takes no input")
}

// A message sent while the last answer streams gets its own answer before
// claude exits: stdin closes at the first result, and claude answers what
// it had read (two results, one turn).
func TestRealSteerLate(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Delay(time.Second), apidouble.Text("First answer.")),
		apidouble.T(apidouble.Text("Second answer.")),
	})
	in := NewInput()
	go func() {
		if h.double.WaitMessages(t.Context(), 1) == nil {
			assert.NoError(t, in.Steer("and the disk?"))
		}
	}()
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "how is it?", Input: in})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	assert.Len(t, dataOf[event.ResultData](t, evs, event.Result), 2)
	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 2)
	assert.Contains(t, requestText(reqs[1]), "and the disk?")
	assert.Equal(t, []string{"First answer.", "Second answer."}, texts(t, evs))
}

// requestText is every text block of a request, joined.
func requestText(r apidouble.Request) string {
	var sb strings.Builder
	for _, m := range r.Messages {
		for _, b := range m.Content {
			sb.WriteString(b.Text)
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}
