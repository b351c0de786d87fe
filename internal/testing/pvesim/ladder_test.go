package pvesim_test

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/verbs"
)

// lit counts the pixels that are not black in the screen's top band, so a
// test can tell a screen with text from an empty one.
func lit(t *testing.T, pngData string) int {
	t.Helper()
	img, err := png.Decode(strings.NewReader(pngData))
	require.NoError(t, err)
	require.Equal(t, pvesim.ScreenWidth, img.Bounds().Dx())
	require.Equal(t, pvesim.ScreenHeight, img.Bounds().Dy())
	n := 0
	for y := 0; y < 200; y++ {
		for x := 0; x < pvesim.ScreenWidth; x++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r != 0 {
				n++
			}
		}
	}
	return n
}

func TestLadderScreenshot(t *testing.T) {
	s := start(t, nil)
	out, stderr, code := s.run(t, "screenshot")
	require.Equal(t, 0, code, stderr)
	booted := lit(t, out)
	assert.Greater(t, booted, 1000, "the boot log is drawn")
	assert.Contains(t, s.vm.Screen(), "devvm login:")

	s.vm.SetPanicked(true)
	assert.Contains(t, s.vm.Screen(), "Kernel panic - not syncing")
	out, _, code = s.run(t, "screenshot")
	require.Equal(t, 0, code)
	assert.NotEqual(t, booted, lit(t, out), "the panic is another picture")

	s.vm.SetState(pvesim.Stopped)
	_, stderr, code = s.run(t, "screenshot")
	assert.Equal(t, 255, code, "qm monitor refuses a stopped VM")
	assert.Contains(t, stderr, "not running")
}

func TestLadderConsole(t *testing.T) {
	s := start(t, func(c *pvesim.Config) { c.ConsoleWindow = 200 * time.Millisecond })
	out, _, code := s.run(t, "console")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "devvm login:")
	s.vm.SetPanicked(true)
	out, _, _ = s.run(t, "console")
	assert.Contains(t, out, "Kernel panic - not syncing: Fatal exception")
	assert.Zero(t, s.srv.SerialWritten(), "console writes nothing")
}

func TestLadderGuestAgent(t *testing.T) {
	s := start(t, nil)
	out, _, code := s.run(t, "guest")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "(ok: the guest agent answers)")
	assert.Contains(t, out, "10.0.10.10")

	s.vm.SetGuestAgent(false)
	out, _, code = s.run(t, "guest")
	assert.Equal(t, 255, code)
	assert.Equal(t, 4, strings.Count(out, "QEMU guest agent is not running"))
	s.vm.SetGuestAgent(true)

	s.vm.SetSSHD(false)
	assert.False(t, s.vm.SSHUp(), "sshd dead")
	_, _, code = s.run(t, "guest")
	assert.Equal(t, 0, code, "while the guest agent lives")
}

func TestLadderTasksLockUnlock(t *testing.T) {
	s := start(t, nil)
	s.vm.SetLock("backup")
	_, _, code := s.run(t, "reset")
	require.NotEqual(t, 0, code, "a locked VM refuses reset")
	out, _, code := s.run(t, "tasks")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "vzdump")
	assert.NotContains(t, out, "UPID:pve:0002", "another VM's task")
	assert.Contains(t, out, "lock: backup")

	_, _, code = s.run(t, "unlock")
	require.Equal(t, 0, code)
	_, _, code = s.run(t, "reset")
	require.Equal(t, 0, code)
	out, _, _ = s.run(t, "tasks")
	assert.Contains(t, out, "no lock")
	assert.Contains(t, strings.Split(out, "\n")[1], "qmreset", "newest first")
}

func TestLadderGuestExec(t *testing.T) {
	ge, err := verbs.Parse("guest-exec")
	require.NoError(t, err)
	line, err := verbs.EncodeLine(ge, []string{"systemctl", "restart", "ssh"})
	require.NoError(t, err)

	off := start(t, nil)
	_, stderr, code := off.run(t, line)
	assert.Equal(t, pvegate.ExitRefused, code)
	assert.Contains(t, stderr, "guest-exec is off")

	s := start(t, func(c *pvesim.Config) { c.AllowGuestExec = true })
	s.vm.SetSSHD(false)
	out, stderr, code := s.run(t, line)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, `"exitcode":0`)
	assert.Equal(t, [][]string{{"systemctl", "restart", "ssh"}}, s.vm.GuestExecs())
	assert.True(t, s.vm.SSHUp(), "restarting sshd brings ssh back")
}

func TestRenderedScreenIsSmall(t *testing.T) {
	s := start(t, nil)
	out, _, _ := s.run(t, "screenshot")
	assert.Less(t, len(out), 200<<10)
	assert.True(t, bytes.HasPrefix([]byte(out), []byte("\x89PNG")))
}
