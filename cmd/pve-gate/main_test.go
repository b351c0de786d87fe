package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
)

func runGate(t *testing.T, command *string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("SSH_ORIGINAL_COMMAND", "")
	if command == nil {
		require.NoError(t, os.Unsetenv("SSH_ORIGINAL_COMMAND"))
	} else {
		t.Setenv("SSH_ORIGINAL_COMMAND", *command)
	}
	t.Setenv("SSH_CONNECTION", "192.0.2.7 40000 192.0.2.1 22")
	var o, e bytes.Buffer
	base := []string{"--syslog=false", "--lock", filepath.Join(t.TempDir(), "lock")}
	code := run(append(base, args...), &o, &e)
	return code, o.String(), e.String()
}

func ptr(s string) *string { return &s }

// line is the base64url JSON of an argv, as guest-exec carries it.
func line(argv ...string) string {
	b, _ := json.Marshal(argv)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		command *string
		args    []string
		code    int
		stdout  string
		stderr  string
	}{
		// /bin/echo as qm prints the exact argv pve-gate passes.
		{"status-argv", ptr("status"), []string{"--qm", "/bin/echo"}, 0, "status 102 --verbose\n", "verb=status"},
		{"vmid-flag", ptr("reset"), []string{"--qm", "/bin/echo", "--vmid", "4711"}, 0, "reset 4711\n", "vmid=4711"},
		{"qm-status", ptr("start"), []string{"--qm", "/bin/false"}, 1, "", "exit=1"},
		{"client-logged", ptr("stop"), []string{"--qm", "/bin/echo"}, 0, "stop 102\n", `client="192.0.2.7 40000 192.0.2.1 22"`},
		{"refused", ptr("status;reboot"), []string{"--qm", "/bin/echo"}, pvegate.ExitRefused, "", "pve-gate: refused: unknown verb"},
		{"unset-command", nil, []string{"--qm", "/bin/echo"}, pvegate.ExitRefused, "", "(empty)"},
		{"missing-qm", ptr("status"), []string{"--qm", "/nonexistent/qm"}, pvegate.ExitNoRun, "", "/nonexistent/qm"},
		{"arguments", ptr("status"), []string{"status"}, pvegate.ExitConfig, "", "takes no arguments"},
		{"guest-exec-off", ptr("guest-exec " + line("id")), []string{"--qm", "/bin/echo"}, pvegate.ExitRefused, "", "guest-exec is off"},
		{"guest-exec", ptr("guest-exec " + line("id", "-u")), []string{"--qm", "/bin/echo", "--allow-guest-exec"}, 0, "guest exec 102 --timeout 60 -- id -u\n", "verb=guest-exec"},
		{"guest-exec-malformed", ptr("guest-exec id"), []string{"--qm", "/bin/echo", "--allow-guest-exec"}, pvegate.ExitRefused, "", "not base64url"},
		{"unlock", ptr("unlock"), []string{"--qm", "/bin/echo"}, 0, "unlock 102\n", "verb=unlock"},
		{"bad-flag", ptr("status"), []string{"--skiplock"}, pvegate.ExitConfig, "", "flag provided but not defined"},
		{"bad-vmid", ptr("status"), []string{"--vmid", "7"}, pvegate.ExitConfig, "", "invalid vmid"},
		{"relative-qm", ptr("status"), []string{"--qm", "qm"}, pvegate.ExitConfig, "", "must be absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runGate(t, tc.command, tc.args...)
			assert.Equal(t, tc.code, code, "stderr: %s", stderr)
			assert.Equal(t, tc.stdout, stdout)
			assert.Contains(t, stderr, tc.stderr)
		})
	}
}

func TestRunRefusalIsOneReasonAndOneLogLine(t *testing.T) {
	code, stdout, stderr := runGate(t, ptr("reset 103"), "--qm", "/bin/echo")
	assert.Equal(t, pvegate.ExitRefused, code)
	assert.Empty(t, stdout, "nothing ran")
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	require.Len(t, lines, 2, stderr)
	assert.True(t, strings.HasPrefix(lines[0], "pve-gate: refused: "), lines[0])
	assert.Contains(t, lines[1], "[WARN]  pve-gate: refused")
}
