package pvegate_test

// The recovery ladder's verbs end to end: the built pve-gate under the stock
// sshd, the real ssh client, the fake qm (and its pvesh copy).

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
	"breakglass/internal/verbs"
)

// ladderFlags are the flags of a host that runs every ladder verb.
var ladderFlags = []string{
	"--pvesh", "$DIR/pvesh", "--serial", "$DIR/serial0", "--run-dir", "$DIR/run",
	"--allow-guest-exec", "--section-timeout", "3s",
}

// startLadderHost is startHost with the ladder's flags and a pvesh.
func startLadderHost(t *testing.T) *host {
	t.Helper()
	h := startHost(t, ladderFlags...)
	b, err := os.ReadFile(h.qm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "pvesh"), b, 0o755))
	return h
}

// frame returns a w×h PPM whose pixels are a function of x and y, and that
// function, so a test can check every pixel.
func frame(w, h int) ([]byte, func(x, y int) [3]byte) {
	px := func(x, y int) [3]byte { return [3]byte{byte(x), byte(y), byte(x ^ y)} }
	var b bytes.Buffer
	fmt.Fprintf(&b, "P6\n%d %d\n255\n", w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := px(x, y)
			b.Write(p[:])
		}
	}
	return b.Bytes(), px
}

func (h *host) write(t *testing.T, suffix, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(h.qm+suffix, []byte(content), 0o600))
}

func TestSSHScreenshot(t *testing.T) {
	h := startLadderHost(t)
	ppm, px := frame(320, 200)
	h.write(t, ".frame", string(ppm))

	res := h.ssh(t, nil, "screenshot")
	require.Equal(t, pvegate.ExitOK, res.code, "stderr: %s", res.stderr)
	img, err := png.Decode(strings.NewReader(res.stdout))
	require.NoError(t, err, "stdout is a PNG")
	require.Equal(t, image.Rect(0, 0, 320, 200), img.Bounds())
	for _, pt := range [][2]int{{0, 0}, {319, 199}, {17, 42}, {200, 3}} {
		r, g, b, a := img.At(pt[0], pt[1]).RGBA()
		want := px(pt[0], pt[1])
		assert.Equal(t, [4]uint32{uint32(want[0]), uint32(want[1]), uint32(want[2]), 255},
			[4]uint32{r >> 8, g >> 8, b >> 8, a >> 8}, "pixel %v", pt)
	}
	bad := 0
	for y := 0; y < 200; y++ {
		for x := 0; x < 320; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			want := px(x, y)
			if byte(r>>8) != want[0] || byte(g>>8) != want[1] || byte(b>>8) != want[2] {
				bad++
			}
		}
	}
	assert.Zero(t, bad, "every pixel as the frame had it (no colour swap)")

	recs := h.calls(t)
	require.Len(t, recs, 1)
	assert.Equal(t, []string{"monitor", "102"}, recs[0].Argv)
	dumped, err := os.ReadFile(h.qm + ".dumped")
	require.NoError(t, err)
	assert.Equal(t, "screendump "+string(dumped)+"\n", recs[0].Stdin, "exactly one screendump command")
	run := filepath.Join(h.dir, "run")
	assert.Equal(t, run, filepath.Dir(filepath.Dir(string(dumped))), "a folder of its own under the run dir")
	fi, err := os.Stat(run)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "the run dir is root-only")
	entries, err := os.ReadDir(run)
	require.NoError(t, err)
	assert.Empty(t, entries, "the temp folder is gone after success")

	t.Run("killed-monitor", func(t *testing.T) {
		h.write(t, ".hangdump", "")
		defer os.Remove(h.qm + ".hangdump")
		res := h.ssh(t, nil, "screenshot")
		assert.Equal(t, pvegate.ExitTimeout, res.code, "stderr: %s", res.stderr)
		assert.Empty(t, res.stdout)
		assert.Contains(t, res.stderr, "killed after 3s")
		dumped, err := os.ReadFile(h.qm + ".dumped")
		require.NoError(t, err)
		assert.NoDirExists(t, filepath.Dir(string(dumped)), "the temp folder is gone after a killed monitor")
		entries, err := os.ReadDir(run)
		require.NoError(t, err)
		assert.Empty(t, entries)
		h.calls(t)
	})
	t.Run("no-display", func(t *testing.T) {
		require.NoError(t, os.Remove(h.qm+".frame"))
		res := h.ssh(t, nil, "screenshot")
		assert.Equal(t, pvegate.ExitUnavailable, res.code)
		assert.Empty(t, res.stdout)
		assert.Contains(t, res.stderr, "QEMU wrote no screen dump")
		assert.Contains(t, res.stderr, "no display", "the monitor's own words")
		h.calls(t)
	})
	t.Run("too-large", func(t *testing.T) {
		h.write(t, ".frame", "P6\n4097 10\n255\n")
		res := h.ssh(t, nil, "screenshot")
		assert.Equal(t, pvegate.ExitUnavailable, res.code)
		assert.Empty(t, res.stdout)
		assert.Contains(t, res.stderr, "4097x10 is larger than 4096x4096")
		h.calls(t)
	})
}

// serialServer listens on path like QEMU's serial socket: it writes text
// to the one client, half-closes, and records what the client sent.
func serialServer(t *testing.T, path, text string) (received <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		defer conn.Close()
		io.WriteString(conn, text)
		conn.(*net.UnixConn).CloseWrite()
		b, _ := io.ReadAll(conn)
		ch <- b
	}()
	return ch
}

func TestSSHConsole(t *testing.T) {
	h := startLadderHost(t)
	t.Run("no-socket", func(t *testing.T) {
		res := h.ssh(t, nil, "console")
		assert.Equal(t, pvegate.ExitUnavailable, res.code)
		assert.Contains(t, res.stdout, "VM 102 has no serial console socket")
		assert.Contains(t, res.stdout, "qm set 102 --serial0 socket")
	})
	t.Run("reads-writes-nothing", func(t *testing.T) {
		text := "[  OK  ] Reached target Emergency Mode.\nGive root password for maintenance\n(or press Control-D to continue): \xff"
		got := serialServer(t, filepath.Join(h.dir, "serial0"), text)
		res := h.ssh(t, nil, "console")
		require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
		assert.Contains(t, res.stdout, "== serial console of VM 102")
		assert.Contains(t, res.stdout, "Give root password for maintenance")
		assert.Contains(t, res.stdout, "\uFFFD", "invalid UTF-8 is shown, not passed on")
		assert.Empty(t, <-got, "console writes nothing to the guest")
		assert.Empty(t, h.calls(t), "console runs no qm")
	})
}

func TestSSHGuest(t *testing.T) {
	h := startLadderHost(t)
	h.write(t, ".guest-ping", "")
	h.write(t, ".guest-get-osinfo", `{"id":"debian","pretty-name":"Debian GNU/Linux 13 (trixie)"}`)
	h.write(t, ".guest-get-fsinfo", `[{"mountpoint":"/","type":"ext4","used-bytes":99000000000,"total-bytes":100000000000},{"mountpoint":"/boot","type":"vfat","used-bytes":1000,"total-bytes":512000000}]`)
	h.write(t, ".guest-network-get-interfaces", `[{"name":"eth0","ip-addresses":[{"ip-address":"10.0.10.10"}]}]`)
	want := []string{"qm guest cmd 102 ping", "qm guest cmd 102 get-osinfo", "qm guest cmd 102 get-fsinfo", "qm guest cmd 102 network-get-interfaces"}

	res := h.ssh(t, nil, "guest")
	require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
	assert.ElementsMatch(t, want, argvs(h.calls(t)))
	assert.Contains(t, res.stdout, "(ok: the guest agent answers)")
	assert.Contains(t, res.stdout, "Debian GNU/Linux 13")
	assert.Regexp(t, `/\s+ext4\s+92\.2 GiB of 93\.1 GiB used \(99%\)   !! nearly full`, res.stdout)
	assert.Contains(t, res.stdout, "10.0.10.10")
	last := -1
	for _, c := range []string{"ping", "get-osinfo", "get-fsinfo", "network-get-interfaces"} {
		at := strings.Index(res.stdout, "== qm guest cmd 102 "+c+" ==")
		assert.Greater(t, at, last, "section %s in order", c)
		last = at
	}

	h.write(t, ".agentdead", "")
	res = h.ssh(t, nil, "guest")
	assert.Equal(t, 255, res.code, "ping's status: the agent does not answer")
	assert.Equal(t, 4, strings.Count(res.stdout, "QEMU guest agent is not running"), "each command reported: %s", res.stdout)
	assert.ElementsMatch(t, want, argvs(h.calls(t)))
}

func TestSSHTasks(t *testing.T) {
	h := startLadderHost(t)
	var tasks []map[string]any
	for i := 0; i < 25; i++ {
		tasks = append(tasks, map[string]any{"upid": fmt.Sprintf("UPID:pve:%d", i), "id": "102", "type": "vzdump",
			"status": "OK", "user": "root@pam", "starttime": 1764000000 + i*60, "endtime": 1764000000 + i*60 + 30})
	}
	tasks = append(tasks, map[string]any{"upid": "UPID:pve:x", "id": "103", "type": "qmdestroy", "user": "mallory@pve", "starttime": 1764999999})
	tasks = append(tasks, map[string]any{"upid": "UPID:pve:y", "id": "102", "type": "qmstart", "user": "root@pam", "starttime": 1765000000})
	b, err := json.Marshal(tasks)
	require.NoError(t, err)
	h.write(t, ".tasks", string(b))
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "pvesh.tasks"), b, 0o600))
	h.write(t, ".lock", "backup")

	res := h.ssh(t, nil, "tasks")
	require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
	assert.Equal(t, []string{"qm config 102"}, argvs(h.calls(t)))
	pc, err := os.ReadFile(filepath.Join(h.dir, "pvesh.calls"))
	require.NoError(t, err)
	var rec qmRecord
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(pc), &rec))
	assert.Equal(t, []string{"get", "/cluster/tasks", "--output-format", "json"}, rec.Argv)
	assert.NotContains(t, res.stdout, "qmdestroy", "another VM's task")
	lines := strings.Split(res.stdout, "\n")
	assert.Contains(t, lines[1], "qmstart", "newest first")
	assert.Contains(t, lines[1], "running")
	assert.Equal(t, 20, strings.Count(res.stdout, "vzdump")+1, "newest 20 in all")
	assert.Contains(t, res.stdout, "lock: backup\n!! the VM is locked (backup)")
}

func TestSSHUnlock(t *testing.T) {
	h := startLadderHost(t)
	res := h.ssh(t, nil, "unlock")
	require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
	assert.Equal(t, []string{"qm unlock 102"}, argvs(h.calls(t)))
}

func encodeLine(t *testing.T, argv ...string) string {
	t.Helper()
	ge, err := verbs.Parse("guest-exec")
	require.NoError(t, err)
	line, err := verbs.EncodeLine(ge, argv)
	require.NoError(t, err)
	return line
}

func TestSSHGuestExec(t *testing.T) {
	argv := []string{"echo", "$(id) ; rm -rf /", "`id`", "a\nb", `'"\`, " ", "日本", "--skiplock"}
	t.Run("byte-for-byte", func(t *testing.T) {
		h := startLadderHost(t)
		res := h.ssh(t, nil, encodeLine(t, argv...))
		require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
		recs := h.calls(t)
		require.Len(t, recs, 1)
		assert.Equal(t, append([]string{"guest", "exec", "102", "--timeout", "60", "--"}, argv...), recs[0].Argv,
			"each argument reaches qm as one argument, unchanged: no shell anywhere")
		assert.Contains(t, res.stderr, `args=["echo", "$(id) ; rm -rf /"`, "the host's log line names the argv")
		var out struct {
			OutData []string `json:"out-data"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &out))
		assert.Equal(t, argv, out.OutData)
	})
	t.Run("refused-without-flag", func(t *testing.T) {
		h := startHost(t)
		res := h.ssh(t, nil, encodeLine(t, argv...))
		assert.Equal(t, pvegate.ExitRefused, res.code)
		assert.Contains(t, res.stderr, "guest-exec is off (pve-gate runs without --allow-guest-exec)")
		assert.Empty(t, h.calls(t))
	})
	t.Run("malformed", func(t *testing.T) {
		h := startLadderHost(t)
		b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		for _, line := range []string{
			"guest-exec",
			"guest-exec id",
			"guest-exec " + b64(`["id"`),
			"guest-exec " + b64(`[]`),
			"guest-exec " + b64(`["id","a\u0000b"]`),
			"guest-exec " + b64(`[ "id" ]`),
			encodeLine(t, "id") + " extra",
			"status " + b64(`["id"]`),
		} {
			res := h.ssh(t, nil, line)
			assert.Equal(t, pvegate.ExitRefused, res.code, "%q", line)
			assert.Contains(t, res.stderr, "pve-gate: refused:")
		}
		assert.Empty(t, h.calls(t), "nothing reached qm")
	})
}
