package session

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// writeRelease1 writes a release-1 session folder (session.json with id
// and created_at only) whose log is well over deferBytes: a turn of n text
// events, a verb, and a second prompt in the middle; open leaves the
// second turn without its done and a torn line after it (a crash).
func writeRelease1(t *testing.T, dir string, n int, open bool) (string, int64) {
	t.Helper()
	id := uuid.New()
	sdir := filepath.Join(dir, id)
	require.NoError(t, os.Mkdir(sdir, 0o700))
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, os.WriteFile(filepath.Join(sdir, metaFile), []byte(fmt.Sprintf(`{"id":%q,"created_at":%q}`, id, t0.Format(time.RFC3339))), 0o600))
	var b strings.Builder
	next := int64(1)
	add := func(typ event.Type, data any) {
		e := event.New(typ, data)
		e.ID = next
		e.Time = t0.Add(time.Duration(next) * time.Second)
		line, err := json.Marshal(e)
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
		next++
	}
	add(event.User, event.UserData{Text: "first prompt of " + id, Actor: "alice"})
	add(event.Session, event.SessionData{SessionID: id})
	for i := 0; i < n; i++ {
		add(event.Text, event.TextData{Delta: strings.Repeat("w", 80)})
	}
	add(event.Done, event.DoneData{Outcome: event.OutcomeSuccess})
	add(event.Verb, event.VerbData{Verb: "status", Actor: "bob"})
	add(event.User, event.UserData{Text: "the needle prompt " + id[:8], Actor: "alice"})
	for i := 0; i < n; i++ {
		add(event.Text, event.TextData{Delta: strings.Repeat("v", 80)})
	}
	if !open {
		add(event.Done, event.DoneData{Outcome: event.OutcomeSuccess})
	} else {
		b.WriteString(`{"id":99999,"event":"te`)
	}
	require.NoError(t, os.WriteFile(filepath.Join(sdir, eventsFile), []byte(b.String()), 0o600))
	require.Greater(t, b.Len(), deferBytes)
	return id, next - 1
}

// TestUpgradeStartsBeforeReadingOldLogs: a history written by release 1
// (no summaries) is listed at once from the two ends of each log; the
// whole logs are read after start, newest first, and then search finds a
// prompt from the middle of a log, and a turn the process died in is
// closed. A client that attaches before that gets the whole log anyway.
func TestUpgradeStartsBeforeReadingOldLogs(t *testing.T) {
	dir := t.TempDir()
	clean, cleanLast := writeRelease1(t, dir, 2000, false)
	crashed, crashedLast := writeRelease1(t, dir, 2000, true)
	hold := make(chan struct{})
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}, holdRebuild: hold})

	for id, last := range map[string]int64{clean: cleanLast, crashed: crashedLast} {
		got, err := m.Get(id)
		require.NoError(t, err)
		assert.Equal(t, last, got.LastEventID, "from the log's last whole line")
		assert.Equal(t, "first prompt of "+id, got.Title, "from its first line")
		assert.Equal(t, time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), got.CreatedAt)
	}
	found, err := m.Search(Query{Text: "needle prompt " + clean[:8]})
	require.NoError(t, err)
	assert.Empty(t, found, "the middle of a log is not read before start-up ends")
	_, fresh, err := readSummary(filepath.Join(dir, clean), clean)
	require.NoError(t, err)
	assert.False(t, fresh, "nothing written yet")

	// A client attaching now gets the whole log, the cut-off turn closed.
	sub, err := m.Attach(crashed, 0)
	require.NoError(t, err)
	rep := replayed(t, sub)
	sub.Close()
	require.Len(t, rep, int(crashedLast)+2)
	assert.Equal(t, []event.Type{event.Error, event.Done}, types(rep[len(rep)-2:]))

	close(hold)
	select {
	case <-m.Rebuilt():
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the background rebuild did not finish")
	}
	found, err = m.Search(Query{Text: "needle prompt " + clean[:8]})
	require.NoError(t, err)
	assert.Equal(t, []string{clean}, ids(found))
	for _, id := range []string{clean, crashed} {
		_, fresh, err := readSummary(filepath.Join(dir, id), id)
		require.NoError(t, err)
		assert.True(t, fresh, id)
	}
	b, err := os.ReadFile(filepath.Join(dir, crashed, eventsFile))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(b), "\n"), "the torn line was cut")
	require.NoError(t, m.Prompt(crashed, "go on", "alice"))
	waitDone(t, m, crashed, crashedLast+2)
}

// TestCloseStopsTheBackgroundRebuild: closing the manager while old logs
// wait to be read ends the rebuild; the next start takes it up again.
func TestCloseStopsTheBackgroundRebuild(t *testing.T) {
	dir := t.TempDir()
	id, last := writeRelease1(t, dir, 2000, false)
	hold := make(chan struct{})
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}, holdRebuild: hold})
	require.NoError(t, err)
	require.NoError(t, m.Close())
	<-m.Rebuilt()
	m2 := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	<-m2.Rebuilt()
	got, err := m2.Get(id)
	require.NoError(t, err)
	assert.Equal(t, last, got.LastEventID)
	_, fresh, err := readSummary(filepath.Join(dir, id), id)
	require.NoError(t, err)
	assert.True(t, fresh)
}
