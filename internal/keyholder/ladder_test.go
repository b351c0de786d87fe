package keyholder_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
)

// TestScreenshotAnswersPNG: a screenshot's answer carries content_type and
// output_base64 instead of output, and the bytes are the VM's screen.
func TestScreenshotAnswersPNG(t *testing.T) {
	e := newSimEnv(t, options{})
	status, body := e.raw(t, "POST", "/v1/verbs/screenshot", `{"actor":"operator:test"}`)
	require.Equal(t, http.StatusOK, status, body)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m))
	assert.Equal(t, "image/png", m["content_type"])
	assert.NotContains(t, m, "output", "binary output is not also text")
	assert.EqualValues(t, 0, m["exit_code"])
	b, err := base64.StdEncoding.DecodeString(m["output_base64"].(string))
	require.NoError(t, err)
	img, err := png.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, pvesim.ScreenWidth, img.Bounds().Dx())
	assert.Equal(t, pvesim.ScreenHeight, img.Bounds().Dy())

	t.Run("failed-screenshot-is-text", func(t *testing.T) {
		e.vm.SetState(pvesim.Stopped)
		defer e.vm.SetState(pvesim.Running)
		status, body := e.raw(t, "POST", "/v1/verbs/screenshot", "")
		require.Equal(t, http.StatusOK, status)
		var res ipc.Result
		require.NoError(t, json.Unmarshal([]byte(body), &res))
		assert.Equal(t, 255, res.ExitCode)
		assert.Empty(t, res.ContentType)
		assert.Contains(t, res.Output, "not running")
	})
}

// TestScreenshotOverCapRefusedNeverCut: a host answering more than 8 MiB of
// PNG gets a refusal, not the first 8 MiB; exactly 8 MiB passes; bytes that
// are not a PNG are refused.
func TestScreenshotOverCapRefusedNeverCut(t *testing.T) {
	dir := shortDir(t)
	pvePath, pveKey, devvmPath := newKeys(t, dir)
	script := filepath.Join(dir, "screen.sh")
	size := filepath.Join(dir, "size")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(
		"#!/bin/sh\nprintf \"$(cat %s)\"\nhead -c $(( %d - 8 )) /dev/zero\n", filepath.Join(dir, "magic"), 8<<20)+
		fmt.Sprintf("[ -e %s ] && head -c 1 /dev/zero\nexit 0\n", size)), 0o755))
	s := sshdtest.Start(t, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey(`restrict,command="`+script+`"`, pveKey.PublicKey())})
	e := newEnv(t, dir, pvePath, pveKey, devvmPath, options{
		pveAddr: s.Addr, pveHostKey: s.HostKey,
		mutate: func(c *keyholder.Config) { c.PVE.User = s.User },
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "magic"), []byte(`\211PNG\r\n\032\n`), 0o644))

	status, body := e.raw(t, "POST", "/v1/verbs/screenshot", "")
	require.Equal(t, http.StatusOK, status, "exactly 8 MiB: %.200s", body)
	var res ipc.Result
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	b, err := base64.StdEncoding.DecodeString(res.OutputBase64)
	require.NoError(t, err)
	assert.Len(t, b, 8<<20)

	require.NoError(t, os.WriteFile(size, nil, 0o644))
	status, body = e.raw(t, "POST", "/v1/verbs/screenshot", "")
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Equal(t, "output_too_large", reasonOf(t, body))
	assert.Contains(t, errorOf(t, body), "refused, not cut")
	assert.NotContains(t, body, "output_base64")

	require.NoError(t, os.Remove(size))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "magic"), []byte(`GIF89a..`), 0o644))
	status, body = e.raw(t, "POST", "/v1/verbs/screenshot", "")
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Equal(t, "bad_output", reasonOf(t, body))
}

// TestGuestExecArgvReachesTheGuest: the argv in the request is what the
// guest agent is asked to run, element for element.
func TestGuestExecArgvReachesTheGuest(t *testing.T) {
	e := newSimEnv(t, options{})
	argv := []string{"sh", "-c", "$(id) ; rm -rf /", "`id`", "a\nb", "日本"}
	body, err := json.Marshal(ipc.RunRequest{Actor: "operator:test", Args: argv})
	require.NoError(t, err)
	status, resp := e.raw(t, "POST", "/v1/verbs/guest-exec", string(body))
	require.Equal(t, http.StatusOK, status, resp)
	assert.Equal(t, [][]string{argv}, e.vm.GuestExecs())
	assert.Contains(t, e.log.String(), `"args":["sh","-c","$(id) ; rm -rf /"`, "the audit line shows the argv")
}

// TestArgsHostileInputs: args only for guest-exec, only within the limits,
// and a body cap of each verb's own; nothing refused reaches SSH.
func TestArgsHostileInputs(t *testing.T) {
	e := newSimEnv(t, options{})
	big := `"` + strings.Repeat("x", 500) + `"`
	nine := "[" + strings.TrimSuffix(strings.Repeat(big+",", 9), ",") + "]"
	cases := []struct {
		name, verb, body string
		want             int
		reason           string
	}{
		{"args-on-status", "status", `{"args":["x"]}`, http.StatusBadRequest, "bad_args"},
		{"empty-args-on-reset", "reset", `{"args":[]}`, http.StatusBadRequest, "bad_args"},
		{"args-on-screenshot", "screenshot", `{"args":["--file","/etc/shadow"]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-no-args", "guest-exec", `{"actor":"a"}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-no-body", "guest-exec", ``, http.StatusBadRequest, "bad_args"},
		{"guest-exec-empty", "guest-exec", `{"args":[]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-empty-command", "guest-exec", `{"args":[""]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-seventeen", "guest-exec", `{"args":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 17), ",") + `]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-long-arg", "guest-exec", `{"args":["echo","` + strings.Repeat("x", 513) + `"]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-over-4k", "guest-exec", `{"args":` + nine + `}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-nul", "guest-exec", `{"args":["echo","a\u0000b"]}`, http.StatusBadRequest, "bad_args"},
		{"guest-exec-string", "guest-exec", `{"args":"id"}`, http.StatusBadRequest, "malformed_json"},
		{"guest-exec-number", "guest-exec", `{"args":[1]}`, http.StatusBadRequest, "malformed_json"},
		{"guest-exec-null-elem", "guest-exec", `{"args":["id",null]}`, http.StatusBadRequest, "malformed_json"},
		{"guest-exec-object-elem", "guest-exec", `{"args":["id",{}]}`, http.StatusBadRequest, "malformed_json"},
		{"guest-exec-invalid-utf8", "guest-exec", "{\"args\":[\"id\",\"\xff\"]}", http.StatusBadRequest, "malformed_json"},
		{"guest-exec-over-16k", "guest-exec", `{"args":["` + strings.Repeat("x", 17<<10) + `"]}`, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"status-over-4k", "status", `{"actor":"` + strings.Repeat("a", 5<<10) + `"}`, http.StatusRequestEntityTooLarge, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.raw(t, "POST", "/v1/verbs/"+c.verb, c.body)
			assert.Equal(t, c.want, status, "body %s", body)
			assert.Equal(t, c.reason, reasonOf(t, body), body)
		})
	}
	assert.Zero(t, e.sim.Connections(), "nothing refused reached SSH")
	assert.Empty(t, e.vm.GuestExecs())

	t.Run("guest-exec-body-over-4k-within-16k", func(t *testing.T) {
		seven := "[" + strings.TrimSuffix(strings.Repeat(big+",", 7), ",") + `,"e"]`
		body := `{"args":` + seven + `}`
		require.Greater(t, len(body), 3<<10)
		status, resp := e.raw(t, "POST", "/v1/verbs/guest-exec", `{"actor":"`+strings.Repeat("a", 200)+`","args":`+seven+`}`)
		assert.Equal(t, http.StatusOK, status, resp)
		assert.Len(t, e.vm.GuestExecs(), 1)
	})
}
