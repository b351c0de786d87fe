package claude

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/uuid"
)

var update = flag.Bool("update", false, "re-capture testdata/cli-*.jsonl from the real claude CLI and rewrite testdata/*.golden")

// goldenEvent is one line of a .golden file.
type goldenEvent struct {
	Event event.Type      `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// translateFile feeds every line of a .jsonl file to a fresh Translator and
// renders the events, then the line counts, one JSON value per line.
func translateFile(t *testing.T, path string) []byte {
	t.Helper()
	in, err := os.ReadFile(path)
	require.NoError(t, err)
	tr := NewTranslator()
	counts := map[LineKind]int{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(nil, DefaultMaxLine)
	for sc.Scan() {
		got := tr.Line(sc.Bytes())
		counts[got.Kind]++
		for _, e := range got.Events {
			b, err := json.Marshal(goldenEvent{Event: e.Type, Data: e.Data})
			require.NoError(t, err)
			out.Write(b)
			out.WriteByte('\n')
		}
	}
	require.NoError(t, sc.Err())
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	out.WriteString("# lines:")
	for _, k := range keys {
		out.WriteString(" " + k + "=" + itoa(counts[LineKind(k)]))
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestGolden(t *testing.T) {
	if *update {
		captureCLI(t)
	}
	inputs, err := filepath.Glob("testdata/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".jsonl")
		t.Run(name, func(t *testing.T) {
			got := translateFile(t, in)
			golden := strings.TrimSuffix(in, ".jsonl") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file: run go test ./internal/claude -run TestGolden -update")
			assert.Equal(t, string(want), string(got))
		})
	}
}

// captureCLI records the real CLI's stdout for scripted scenarios into
// testdata/cli-*.jsonl (only with -update).
func captureCLI(t *testing.T) {
	scenarios := []struct {
		name      string
		script    []apidouble.Turn
		interrupt bool
	}{
		{"cli-tool-turn", []apidouble.Turn{
			apidouble.T(apidouble.Text("Checking uptime. "), apidouble.Bash("echo hello-from-tool")),
			apidouble.AfterToolResult(apidouble.Text("The devvm looks healthy.")),
		}, false},
		{"cli-api-error", []apidouble.Turn{apidouble.T(apidouble.Status(400))}, false},
		{"cli-sigint", []apidouble.Turn{apidouble.T(apidouble.Text("Working on "), apidouble.Delay(time.Hour))}, true},
	}
	for _, sc := range scenarios {
		h := newHarness(t, sc.script)
		turn := Turn{SessionID: uuid.New(), Prompt: "capture " + sc.name, Dir: h.dir}
		cmd := exec.Command(h.runner.cfg.Binary, h.runner.Args(turn, false)...)
		cmd.Env = h.runner.childEnv(turn)
		cmd.Dir = h.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout = &out
		require.NoError(t, cmd.Start())
		if sc.interrupt {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			require.NoError(t, h.double.WaitMessages(ctx, 1))
			cancel()
			require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
		}
		_ = cmd.Wait()
		require.NoError(t, os.WriteFile(filepath.Join("testdata", sc.name+".jsonl"), out.Bytes(), 0o644))
	}
}
