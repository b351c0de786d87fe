package claude

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// MarkVar is the environment variable that tags every process of a turn.
// claude starts each Bash tool call in a new session (setsid), so a tool's
// background processes leave claude's process group; they keep the
// environment they inherited, though, and that is how the turn finds them
// at its end.
const MarkVar = "BREAKGLASS_TURN_MARK"

// newMark returns a fresh, unguessable turn mark.
func newMark() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// maxEnviron bounds how much of a process's environment is read.
const maxEnviron = 1 << 20

// markedPIDs lists the processes whose environment carries MarkVar=mark,
// reading procDir (normally /proc). Processes it cannot read are skipped.
func markedPIDs(procDir, mark string) []int {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	needle := []byte(MarkVar + "=" + mark + "\x00")
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == self {
			continue
		}
		f, err := os.Open(filepath.Join(procDir, e.Name(), "environ"))
		if err != nil {
			continue
		}
		env, _ := io.ReadAll(io.LimitReader(f, maxEnviron))
		f.Close()
		if bytes.HasPrefix(env, needle) || bytes.Contains(env, append([]byte{0}, needle...)) {
			out = append(out, pid)
		}
	}
	return out
}

// killMarked SIGKILLs every process carrying the turn's mark, until none is
// left or the deadline passes. It returns how many it killed.
func killMarked(procDir, mark string, within time.Duration) int {
	deadline := time.Now().Add(within)
	killed := map[int]bool{}
	for {
		pids := markedPIDs(procDir, mark)
		if len(pids) == 0 {
			return len(killed)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil || !errors.Is(err, syscall.ESRCH) {
				killed[pid] = true
			}
		}
		if time.Now().After(deadline) {
			return len(killed)
		}
		// A killed process keeps its environment until the kernel tears
		// down its memory; look again shortly (there is no event for it).
		time.Sleep(5 * time.Millisecond)
	}
}
