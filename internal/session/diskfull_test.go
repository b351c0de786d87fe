package session

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// TestDiskFullKeepsTheLogWhole: the disk fills while a session's log is
// written. Without care the failed write leaves half a line, and every line
// appended after it (once space is back) would follow the torn one, so a
// reload would stop there and lose them. The manager cuts the partial line
// back off, stops saving the session, and sends an `error` event saying so;
// the events still reach subscribers, and the saved log reloads whole.
//
// RLIMIT_FSIZE stands in for the full disk: it binds root too (chmod does
// not), and the write comes back short, then EFBIG, as ENOSPC would.
func TestDiskFullKeepsTheLogWhole(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	info, err := m.Create()
	require.NoError(t, err)
	verb := func(out string) event.Event {
		return event.New(event.Verb, event.VerbData{Verb: "status", Actor: "alice", Output: out})
	}
	for range 3 {
		require.NoError(t, m.Append(info.ID, verb("status: running")))
	}
	logPath := filepath.Join(dir, info.ID, eventsFile)
	before, err := os.ReadFile(logPath)
	require.NoError(t, err)
	sub, err := m.Attach(info.ID, 3)
	require.NoError(t, err)
	defer sub.Close()

	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	capped := old
	capped.Cur = uint64(len(before)) + 20
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped))
	err4 := m.Append(info.ID, verb(strings.Repeat("x", 200)))
	err6 := m.Append(info.ID, verb("after the disk filled"))
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old))
	require.NoError(t, err4)
	require.NoError(t, err6)

	var got []event.Event
	for len(got) < 3 {
		e, ok := <-sub.C
		require.True(t, ok, "subscription dropped after %v", types(got))
		got = append(got, e)
	}
	assert.Equal(t, []event.Type{event.Verb, event.Error, event.Verb}, types(got))
	var d event.ErrorData
	require.NoError(t, json.Unmarshal(got[1].Data, &d))
	assert.Contains(t, d.Message, "cannot be saved (file too large)")
	assert.NotContains(t, d.Message, dir, "no path in the message")

	after, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "the partial line was cut back off; nothing after it was written")

	// More room now: the session still does not write, so no line can
	// follow a gap; a reload finds the three saved events.
	require.NoError(t, m.Append(info.ID, verb("room again")))
	after, err = os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after))
	require.NoError(t, m.Close())

	m2 := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	got2, err := m2.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(3), got2.LastEventID)
}

// TestCreateOnFullDiskLeavesNothing: a session whose session.json cannot be
// written is refused and leaves no folder; a folder left unfinished by an
// earlier crash (no session.json, no event) is not listed at start.
func TestCreateOnFullDiskLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	capped := old
	capped.Cur = 10
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped))
	_, err := m.Create()
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old))
	require.Error(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no half-made folder")
	assert.Empty(t, m.List())

	unfinished := filepath.Join(dir, uuid.New())
	require.NoError(t, os.Mkdir(unfinished, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(unfinished, eventsFile), nil, 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, uuid.New()), 0o700))
	m2 := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	assert.Empty(t, m2.List())
}

// TestRenameOnFullDiskChangesNothing: a rename or an archive that cannot be
// saved is refused and leaves the session as it was, in memory and on disk.
func TestRenameOnFullDiskChangesNothing(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	info, err := m.Create()
	require.NoError(t, err)
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	capped := old
	capped.Cur = 10
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped))
	_, errRename := m.Rename(info.ID, "Disk full")
	_, errArchive := m.Archive(info.ID)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old))
	assert.Error(t, errRename)
	assert.Error(t, errArchive)
	got, err := m.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, "", got.Title)
	assert.False(t, got.Archived)
	assert.Len(t, m.List(), 1)
	entries, err := os.ReadDir(filepath.Join(dir, info.ID))
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary file left beside session.json")
}
