package claude

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

// feed translates lines and returns all events.
func feed(t *testing.T, lines ...string) ([]event.Event, *Translator) {
	t.Helper()
	tr := NewTranslator()
	var out []event.Event
	for _, l := range lines {
		out = append(out, tr.Line([]byte(l)).Events...)
	}
	return out, tr
}

func TestTranslateRules(t *testing.T) {
	const (
		start     = `{"type":"stream_event","event":{"type":"message_start","message":{"model":"m"}}}`
		textStart = `{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}`
		delta     = `{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello "}}}`
		delta2    = `{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"world"}}}`
		full      = `{"type":"assistant","message":{"model":"m","content":[{"type":"text","text":"Hello world"}]}}`
	)
	tests := []struct {
		name  string
		lines []string
		want  []string // "type:data" compact
	}{
		{"deltas-then-full-once", []string{start, textStart, delta, delta2, full},
			[]string{`text:{"delta":"Hello "}`, `text:{"delta":"world"}`}},
		{"full-without-deltas", []string{start, textStart, full},
			[]string{`text:{"delta":"Hello world"}`}},
		{"no-partial-messages", []string{full},
			[]string{`text:{"delta":"Hello world"}`}},
		{"second-message-resets", []string{start, textStart, delta, full, start, textStart, full},
			[]string{`text:{"delta":"Hello "}`, `text:{"delta":"Hello world"}`}},
		{"thinking-ignored", []string{
			`{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}}`,
			`{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}}`,
			`{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"}]}}`,
		}, nil},
		{"tool-input-deltas-ignored", []string{
			`{"type":"stream_event","event":{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"command\":"}}}`,
		}, nil},
		{"bash-command", []string{`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"uptime","description":"d"}}]}}`},
			[]string{`tool:{"tool_use_id":"t1","name":"Bash","input":"uptime"}`}},
		{"bash-without-command", []string{`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"x":1}}]}}`},
			[]string{`tool:{"tool_use_id":"t1","name":"Bash","input":"{\"x\":1}"}`}},
		{"other-tool-compact-json", []string{`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Read","input":{ "file_path" : "/etc/hosts" }}]}}`},
			[]string{`tool:{"tool_use_id":"t2","name":"Read","input":"{\"file_path\":\"/etc/hosts\"}"}`}},
		{"tool-result-string", []string{`{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"up 3 days","is_error":false}]}}`},
			[]string{`tool_result:{"tool_use_id":"t1","output":"up 3 days","is_error":false}`}},
		{"tool-result-blocks", []string{`{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"is_error":true}]}}`},
			[]string{`tool_result:{"tool_use_id":"t1","output":"a\nb","is_error":true}`}},
		{"interrupted-not-text", []string{`{"type":"user","message":{"content":[{"type":"text","text":"[Request interrupted by user]"}]}}`}, nil},
		{"synthetic-is-error", []string{`{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: 529 Overloaded"}]}}`},
			[]string{`error:{"message":"API Error: 529 Overloaded"}`}},
		{"init", []string{`{"type":"system","subtype":"init","session_id":"s","model":"m","tools":["Bash"]}`},
			[]string{`session:{"session_id":"s","model":"m","tools":["Bash"]}`}},
		{"init-no-tools", []string{`{"type":"system","subtype":"init","session_id":"s","model":"m"}`},
			[]string{`session:{"session_id":"s","model":"m","tools":[]}`}},
		{"requesting", []string{`{"type":"system","subtype":"status","status":"requesting"}`},
			[]string{`status:{"state":"requesting"}`}},
		{"other-status-ignored", []string{`{"type":"system","subtype":"status","status":"compacting"}`}, nil},
		{"api-retry", []string{`{"type":"system","subtype":"api_retry","attempt":3,"max_retries":10,"retry_delay_ms":2156,"error_status":529,"error":"overloaded"}`},
			[]string{`status:{"state":"retrying","attempt":3,"max_retries":10,"retry_in_ms":2156,"error":"529 overloaded"}`}},
		{"result-success", []string{`{"type":"result","subtype":"success","is_error":false,"result":"ok","duration_ms":12,"num_turns":1,"total_cost_usd":0.01}`},
			[]string{`result:{"subtype":"success","is_error":false,"text":"ok","duration_ms":12,"num_turns":1,"total_cost_usd":0.01}`}},
		{"result-error-with-success-subtype", []string{`{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500","duration_ms":1,"num_turns":1,"total_cost_usd":0}`},
			[]string{
				`result:{"subtype":"success","is_error":true,"text":"API Error: 500","duration_ms":1,"num_turns":1,"total_cost_usd":0}`,
				`error:{"message":"claude ended the turn with an error (success): API Error: 500"}`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _ := feed(t, tc.lines...)
			var got []string
			for _, e := range evs {
				got = append(got, string(e.Type)+":"+string(e.Data))
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestTranslateLineKinds(t *testing.T) {
	tests := []struct {
		name string
		line string
		want LineKind
	}{
		{"known", `{"type":"system","subtype":"status","status":"requesting"}`, LineKnown},
		{"rate-limit", `{"type":"rate_limit_event"}`, LineKnown},
		{"unknown-type", `{"type":"brand_new"}`, LineUnknown},
		{"unknown-subtype", `{"type":"system","subtype":"brand_new"}`, LineUnknown},
		{"no-type", `{"hello":1}`, LineUnknown},
		{"wrong-field-type", `{"type":"assistant","message":"not an object"}`, LineUnknown},
		{"plain-text", `Segmentation fault`, LineInvalid},
		{"truncated", `{"type":"system"`, LineInvalid},
		{"array", `[1]`, LineInvalid},
		{"empty", ``, LineInvalid},
		{"type-not-string", `{"type":7}`, LineUnknown},
		{"trailing-comma", `{"type":"system",}`, LineInvalid},
		{"missing-comma", `{"type":"system" "subtype":"init"}`, LineInvalid},
		{"leading-comma", `{,"type":"system"}`, LineInvalid},
		{"trailing-garbage", `{"type":"system"} x`, LineInvalid},
		{"unclosed-string", `{"type":"system}`, LineInvalid},
		{"bad-literal", `{"type":"system","x":tru}`, LineInvalid},
		{"unbalanced", `{"type":"system","x":[1,2}`, LineInvalid},
		{"escaped-key", `{"typ\u0065":"system"}`, LineUnknown},
		{"whitespace", " \t{ \"type\" : \"rate_limit_event\" } \r", LineKnown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NewTranslator().Line([]byte(tc.line))
			assert.Equal(t, tc.want, got.Kind)
			if tc.want != LineKnown {
				assert.Empty(t, got.Events)
			}
		})
	}
}

func TestToolOutputCapped(t *testing.T) {
	big := strings.Repeat("é", MaxToolOutput) // 2 bytes each: twice the cap
	line, err := json.Marshal(map[string]any{
		"type": "user",
		"message": map[string]any{"content": []map[string]any{
			{"type": "tool_result", "tool_use_id": "t", "content": big},
		}},
	})
	require.NoError(t, err)
	evs, _ := feed(t, string(line))
	require.Len(t, evs, 1)
	var d event.ToolResultData
	require.NoError(t, json.Unmarshal(evs[0].Data, &d))
	assert.LessOrEqual(t, len(d.Output), MaxToolOutput)
	assert.True(t, strings.HasSuffix(d.Output, TruncatedMarker))
	assert.True(t, utf8.ValidString(d.Output), "cut on a rune boundary")
}

// TestTranslatorSignals: what a line means beyond its events is handed
// back typed, so nobody sniffs the events' JSON.
func TestTranslatorSignals(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Translated
	}{
		{"init", `{"type":"system","subtype":"init","session_id":"s","model":"m","tools":[]}`, Translated{Kind: LineKnown, Init: true}},
		{"stream-event-answers", `{"type":"stream_event","event":{"type":"message_start"}}`, Translated{Kind: LineKnown, Answered: true}},
		{"assistant-answers", `{"type":"assistant","message":{"content":[]}}`, Translated{Kind: LineKnown, Answered: true}},
		{"status-is-no-answer", `{"type":"system","subtype":"status","status":"requesting"}`, Translated{Kind: LineKnown}},
		{"retry", `{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":500,"error_status":null,"error":"connection refused"}`,
			Translated{Kind: LineKnown, Retry: &Retry{Attempt: 2, Error: "connection refused"}}},
		{"retry-with-status", `{"type":"system","subtype":"api_retry","attempt":1,"error_status":529,"error":{"type":"overloaded_error"}}`,
			Translated{Kind: LineKnown, Retry: &Retry{Attempt: 1, Error: `529 {"type":"overloaded_error"}`}}},
		{"result", `{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.25,"num_turns":1}`,
			Translated{Kind: LineKnown, Result: &event.ResultData{Subtype: "success", Text: "ok", TotalCostUSD: 0.25, NumTurns: 1}}},
		{"unused-field-of-odd-shape", `{"type":"result","subtype":"success","usage":"odd","total_cost_usd":1}`,
			Translated{Kind: LineKnown, Result: &event.ResultData{Subtype: "success", TotalCostUSD: 1}}},
		{"used-field-of-odd-shape", `{"type":"result","subtype":"success","total_cost_usd":"1"}`, Translated{Kind: LineUnknown}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NewTranslator().Line([]byte(tc.line))
			got.Events = nil
			assert.Equal(t, tc.want, got)
		})
	}
}

// seedLines are every line of the golden inputs: the fuzz seeds and the
// benchmark's input.
func seedLines(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.jsonl")
	require.NoError(tb, err)
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(tb, err)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, DefaultMaxLine)
		for sc.Scan() {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	return out
}

// FuzzTranslator: no line, and no sequence of two lines, makes the
// translator panic or emit an event whose data is not JSON.
func FuzzTranslator(f *testing.F) {
	lines := seedLines(f)
	for i, l := range lines {
		next := lines[(i+1)%len(lines)]
		f.Add(l, next)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if tb := bytes.TrimSpace(a); json.Valid(tb) && len(tb) > 0 && tb[0] == '{' {
			if NewTranslator().Line(a).Kind == LineInvalid {
				t.Fatalf("a valid JSON object classified invalid: %q", a)
			}
		}
		tr := NewTranslator()
		for _, l := range [][]byte{a, b, a} {
			got := tr.Line(l)
			if got.Kind != LineKnown && len(got.Events) > 0 {
				t.Fatalf("%s line produced events", got.Kind)
			}
			for _, e := range got.Events {
				if !json.Valid(e.Data) {
					t.Fatalf("event %s with invalid data %q", e.Type, e.Data)
				}
				if e.Type == event.ToolResult {
					var d event.ToolResultData
					if err := json.Unmarshal(e.Data, &d); err != nil || len(d.Output) > MaxToolOutput {
						t.Fatalf("tool output over the cap: %d", len(d.Output))
					}
				}
			}
		}
	})
}

// BenchmarkTranslate reports stream-json translation throughput (MB/s via
// SetBytes) over the golden inputs; target > 50 MB/s.
func BenchmarkTranslate(b *testing.B) {
	lines := seedLines(b)
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	b.SetBytes(size)
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		tr := NewTranslator()
		for _, l := range lines {
			events += len(tr.Line(l).Events)
		}
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}
