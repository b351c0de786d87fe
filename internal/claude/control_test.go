package claude

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The operator-in-the-loop rules without a process: how each mode answers,
// the exact lines written on claude's stdin, and what the machine does
// with a control request.

func TestDecide(t *testing.T) {
	bash := func(cmd string) PermissionRequest { return PermissionRequest{Tool: "Bash", Display: cmd} }
	tests := []struct {
		name string
		mode Mode
		req  PermissionRequest
		want Verdict
	}{
		{"autopilot allows", ModeAutopilot, bash("rm -rf /tmp/x"), VerdictAllow},
		{"careful asks", ModeCareful, bash("rm -rf /tmp/x"), VerdictAsk},
		{"read-only denies", ModeReadOnly, bash("rm -rf /tmp/x"), VerdictDeny},
		{"unknown mode asks", Mode("yolo"), bash("rm -rf /tmp/x"), VerdictAsk},
		{"empty mode asks", Mode(""), bash("rm -rf /tmp/x"), VerdictAsk},
		{"careful asks other tools", ModeCareful, PermissionRequest{Tool: "Read", Display: `{"file_path":"/etc/shadow"}`}, VerdictAsk},
		{"exact pve verb in careful", ModeCareful, bash("pve status"), VerdictAllow},
		{"exact pve verb in read-only", ModeReadOnly, bash("pve reset"), VerdictAllow},
		{"pve with an argument asks", ModeCareful, bash("pve guest-exec -- rm -rf /"), VerdictAsk},
		{"pve then another command asks", ModeCareful, bash("pve status; rm -rf /"), VerdictAsk},
		{"pve with a newline asks", ModeCareful, bash("pve status\nrm -rf /"), VerdictAsk},
		{"pve with two spaces asks", ModeCareful, bash("pve  status"), VerdictAsk},
		{"pve unknown verb asks", ModeCareful, bash("pve destroy"), VerdictAsk},
		{"pve in read-only with args denies", ModeReadOnly, bash("pve status && touch x"), VerdictDeny},
		{"pve as another tool's input asks", ModeCareful, PermissionRequest{Tool: "Read", Display: "pve status"}, VerdictAsk},
		{"a path named pve asks", ModeCareful, bash("./pve status"), VerdictAsk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Decide(tc.mode, tc.req))
		})
	}
}

func TestModes(t *testing.T) {
	for _, m := range Modes() {
		assert.True(t, m.Valid(), m)
	}
	for _, m := range []Mode{"", "Careful", "readonly", "read_only", "autopilot "} {
		assert.False(t, m.Valid(), "%q", m)
	}
	assert.Equal(t, ModeCareful, DefaultMode)
}

func TestEncodePermission(t *testing.T) {
	req := PermissionRequest{RequestID: "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Tool: "Bash", Input: json.RawMessage(`{"command":"touch /x","description":"d"}`)}
	assert.JSONEq(t,
		`{"type":"control_response","response":{"subtype":"success","request_id":"3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","response":{"behavior":"allow","updatedInput":{"command":"touch /x","description":"d"}}}}`,
		string(encodePermission(req, PermissionAnswer{Allow: true, Message: "ignored"})), "allow sends the input unchanged and nothing else")
	assert.JSONEq(t,
		`{"type":"control_response","response":{"subtype":"success","request_id":"3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","response":{"behavior":"deny","message":"not now \"quoted\"\nline"}}}`,
		string(encodePermission(req, PermissionAnswer{Message: "not now \"quoted\"\nline"})))
	var deny struct {
		Response struct {
			Response struct{ Message string } `json:"response"`
		} `json:"response"`
	}
	require.NoError(t, json.Unmarshal(encodePermission(req, PermissionAnswer{}), &deny))
	assert.NotEmpty(t, deny.Response.Response.Message, "a deny always tells the agent why")
	assert.JSONEq(t,
		`{"type":"control_response","response":{"subtype":"error","request_id":"r1","error":"no"}}`,
		string(encodeControlError("r1", "no")))
	for _, b := range [][]byte{encodePermission(req, PermissionAnswer{Allow: true}), encodeControlError("r", "x\ny"), encodeUser("a\nb")} {
		assert.Equal(t, byte('\n'), b[len(b)-1])
		assert.NotContains(t, string(b[:len(b)-1]), "\n", "one line each")
		assert.NotContains(t, string(b), "updatedPermissions", "no rule outlives the answer")
	}
}

const canUseTool = `{"type":"control_request","request_id":"3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","request":{"subtype":"can_use_tool","tool_name":"Bash","display_name":"Bash","input":{"command":"touch /etc/x && echo touched","description":"Touch"},"description":"Touch a file","permission_suggestions":[{"type":"addRules","rules":[{"toolName":"Bash","ruleContent":"touch:*"}],"behavior":"allow","destination":"session"}]}}`

func TestTranslateControlRequest(t *testing.T) {
	tr := NewTranslator().Line([]byte(canUseTool))
	assert.Equal(t, LineKnown, tr.Kind)
	assert.Empty(t, tr.Events)
	require.NotNil(t, tr.Control)
	require.NotNil(t, tr.Control.Permission)
	p := tr.Control.Permission
	assert.Equal(t, "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", p.RequestID)
	assert.Equal(t, "Bash", p.Tool)
	assert.Equal(t, "touch /etc/x && echo touched", p.Display)
	assert.Equal(t, "Touch a file", p.Description)
	assert.JSONEq(t, `{"command":"touch /etc/x && echo touched","description":"Touch"}`, string(p.Input))

	tr = NewTranslator().Line([]byte(`{"type":"control_request","request_id":"r2","request":{"subtype":"hook_callback","callback_id":"x"}}`))
	require.NotNil(t, tr.Control)
	assert.Nil(t, tr.Control.Permission)
	assert.Equal(t, "hook_callback", tr.Control.Subtype)

	for _, l := range []string{
		`{"type":"control_request","request":{"subtype":"can_use_tool"}}`,
		`{"type":"control_request","request_id":"r3"}`,
		`{"type":"control_request","request_id":7,"request":{}}`,
		`{"type":"control_cancel_request"}`,
	} {
		tr := NewTranslator().Line([]byte(l))
		assert.Equal(t, LineUnknown, tr.Kind, l)
		assert.Nil(t, tr.Control, l)
	}
	tr = NewTranslator().Line([]byte(`{"type":"control_cancel_request","request_id":"r4"}`))
	assert.Equal(t, "r4", tr.CancelRequest)
}

func TestMachineControl(t *testing.T) {
	cfg := machineConfig{InitTimeout: 60e9, RetryCutoff: 300e9}
	t.Run("can_use_tool is asked", func(t *testing.T) {
		m := newMachine(cfg, t0)
		m.Step(lineIn(initLine))
		s := m.Step(lineIn(canUseTool))
		require.NotNil(t, s.Ask)
		assert.Equal(t, "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", s.Ask.RequestID)
		assert.Empty(t, s.Write)
		assert.False(t, s.CloseInput)
	})
	t.Run("an unknown control request is answered with an error at once", func(t *testing.T) {
		m := newMachine(cfg, t0)
		s := m.Step(lineIn(`{"type":"control_request","request_id":"r2","request":{"subtype":"mcp_message"}}`))
		assert.Nil(t, s.Ask)
		require.Len(t, s.Write, 1)
		var l controlResponseLine
		require.NoError(t, json.Unmarshal(s.Write[0], &l))
		assert.Equal(t, "error", l.Response.Subtype)
		assert.Equal(t, "r2", l.Response.RequestID)
		assert.Contains(t, l.Response.Error, "mcp_message")
	})
	t.Run("a request while stopping is denied at once", func(t *testing.T) {
		m := newMachine(cfg, t0)
		m.Step(lineIn(initLine))
		s := m.Step(inStop{Cancel: true})
		assert.True(t, s.Interrupt)
		assert.True(t, s.CloseInput, "stdin closes when the turn stops")
		s = m.Step(lineIn(canUseTool))
		assert.Nil(t, s.Ask)
		require.Len(t, s.Write, 1)
		assert.Contains(t, string(s.Write[0]), `"behavior":"deny"`)
	})
	t.Run("stdin closes at the first result only", func(t *testing.T) {
		m := newMachine(cfg, t0)
		m.Step(lineIn(initLine))
		assert.True(t, m.Step(lineIn(okResult)).CloseInput)
		assert.False(t, m.Step(lineIn(okResult)).CloseInput)
		assert.Equal(t, outcomeOf(m.Step(exitWith(0, ""))), outcomeOf(step{Outcome: Outcome{Outcome: "success"}}))
	})
	t.Run("several results: the last decides", func(t *testing.T) {
		got := feedMachine(t, cfg, []input{lineIn(initLine), lineIn(okResult), lineIn(errResult), exitWith(1, "")})
		assert.Equal(t, "error", string(got.last.Outcome.Outcome))
		got = feedMachine(t, cfg, []input{lineIn(initLine), lineIn(okResult), lineIn(okResult), exitWith(0, "")})
		assert.Equal(t, "success", string(got.last.Outcome.Outcome))
	})
	t.Run("no result is an error", func(t *testing.T) {
		got := feedMachine(t, cfg, []input{lineIn(initLine), exitWith(0, "")})
		assert.Equal(t, "error", string(got.last.Outcome.Outcome))
		assert.Contains(t, got.events, "error:claude ended without a result")
	})
	t.Run("a cancel request withdraws", func(t *testing.T) {
		m := newMachine(cfg, t0)
		assert.Equal(t, "r9", m.Step(lineIn(`{"type":"control_cancel_request","request_id":"r9"}`)).Withdraw)
	})
}

// outcomeOf is a step's outcome name, for comparisons.
func outcomeOf(s step) string { return string(s.Outcome.Outcome) }

func TestInput(t *testing.T) {
	in := NewInput()
	require.NoError(t, in.Steer("one"))
	require.NoError(t, in.Steer("two"))
	select {
	case <-in.readyC():
	default:
		t.Fatal("a queued message is signalled")
	}
	assert.Equal(t, []string{"one", "two"}, in.take())
	assert.Empty(t, in.take())
	require.NoError(t, in.Steer("three"))
	assert.Equal(t, []string{"three"}, in.Close(), "what was accepted before the close still goes in")
	assert.ErrorIs(t, in.Steer("four"), ErrInputClosed)
	var none *Input
	assert.Nil(t, none.readyC())
	assert.Empty(t, none.Close())
}
