package session

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// streamingTurn emits n text deltas, then a result.
func streamingTurn(n int) func(context.Context, claude.Turn, func(event.Event)) claude.Outcome {
	return func(_ context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID}))
		for i := 0; i < n; i++ {
			emit(event.New(event.Text, event.TextData{Delta: "x"}))
		}
		emit(event.New(event.Result, event.ResultData{Subtype: "success"}))
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}
}

// TestReplaySeamUnderStreamingTurn has several clients disconnect at random
// points of a streaming turn (and of verbs appended beside it) and resume by
// id, while the janitor is told the idle timeout has long passed: each
// client sees the whole log once, in order, with no gap and no duplicate
// where the replay read from the file meets the live tail.
func TestReplaySeamUnderStreamingTurn(t *testing.T) {
	const n, clients = 3000, 4
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	m := newManager(t, Config{Runner: &fakeRunner{script: streamingTurn(n)}, SubscriberBuffer: 16, IdleTimeout: time.Nanosecond})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "go", "alice"))

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // the VM sheet's verbs land in the same log
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "status"})) != nil || i > 200 {
				return
			}
		}
	}()
	go func() { // eviction attempts throughout
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				m.sweep(time.Now().Add(time.Hour))
			}
		}
	}()

	var wg sync.WaitGroup
	results := make([][]int64, clients)
	reconnects := make([]int, clients)
	errs := make(chan string, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			last := int64(0)
			for {
				sub, err := m.Attach(info.ID, last)
				if err != nil {
					errs <- err.Error()
					return
				}
				budget := rng.IntN(300) + 1
				done := false
				take := func(e event.Event) {
					results[c] = append(results[c], e.ID)
					last = e.ID
					budget--
					done = done || e.Type == event.Done
				}
				for e := range sub.Replay() {
					if budget == 0 || done {
						break
					}
					take(e)
				}
			live:
				for budget > 0 && !done {
					select {
					case e, ok := <-sub.C:
						if !ok {
							break live // dropped for being slow: resume by id
						}
						take(e)
					case <-time.After(10 * time.Second):
						errs <- "stream stalled"
						sub.Close()
						return
					}
				}
				sub.Close()
				if done {
					return
				}
				reconnects[c]++
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for e := range errs {
		require.Fail(t, e)
	}
	final, err := m.Get(info.ID)
	require.NoError(t, err)
	for c := range clients {
		assert.GreaterOrEqual(t, reconnects[c], 5, "client %d", c)
		ids := results[c]
		require.NotEmpty(t, ids)
		for i, id := range ids {
			require.Equal(t, int64(i+1), id, "client %d: gap or duplicate (seed %d)", c, seed)
		}
		// The done may come before some verbs: the client stops there.
		assert.LessOrEqual(t, ids[len(ids)-1], final.LastEventID)
		assert.GreaterOrEqual(t, ids[len(ids)-1], int64(n+3))
	}
}

// TestEvictionDropsOnlyWhatNobodyNeeds: an attached session keeps its log
// open and its subscriber gets every event; once nobody is attached and
// the idle timeout passed, the log is closed; a later event reopens it, and
// a client resuming by id gets exactly what it missed.
func TestEvictionDropsOnlyWhatNobodyNeeds(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}, IdleTimeout: time.Minute, Now: clk.Now})
	info, err := m.Create()
	require.NoError(t, err)
	verb := event.New(event.Verb, event.VerbData{Verb: "status"})
	require.NoError(t, m.Append(info.ID, verb))

	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	m.sweep(clk.Now().Add(time.Hour))
	assert.Equal(t, 1, m.loaded(), "an attached session stays")
	require.NoError(t, m.Append(info.ID, verb))
	e := <-sub.C
	assert.Equal(t, int64(2), e.ID)
	sub.Close()

	m.sweep(clk.Now().Add(30 * time.Second))
	assert.Equal(t, 1, m.loaded(), "not yet idle long enough")
	m.sweep(clk.Now().Add(time.Hour))
	assert.Equal(t, 0, m.loaded(), "dropped after the idle timeout")

	require.NoError(t, m.Append(info.ID, verb))
	require.NoError(t, m.Prompt(info.ID, "again", "alice"))
	got := waitDone(t, m, info.ID, 2)
	assert.Equal(t, int64(3), got[0].ID)
	assert.Equal(t, []event.Type{event.Verb, event.User, event.Session, event.Text, event.Result, event.Done}, types(got))
	all := waitDone(t, m, info.ID, 0)
	for i, e := range all {
		assert.Equal(t, int64(i+1), e.ID)
	}
}

// TestRunningTurnIsNeverDropped: a turn with nobody attached keeps its
// session in use; the janitor drops it only after the turn ended.
func TestRunningTurnIsNeverDropped(t *testing.T) {
	started := make(chan struct{}, 1)
	m := newManager(t, Config{Runner: &fakeRunner{script: untilCancelled(started)}, IdleTimeout: time.Nanosecond})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	<-started
	m.sweep(time.Now().Add(time.Hour))
	assert.Equal(t, 1, m.loaded())
	require.NoError(t, m.Cancel(info.ID))
	got := waitDone(t, m, info.ID, 0)
	assert.Equal(t, event.OutcomeCancelled, doneOf(t, got[len(got)-1]).Outcome)
	m.sweep(time.Now().Add(time.Hour))
	assert.Equal(t, 0, m.loaded())
}

// copyDir copies a session fixture folder into a new sessions folder.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(from)))
	return dir
}

// TestRelease1FolderLoads: a folder written by release 1 (session.json
// with only id and created_at) loads unchanged: same id, same events, its
// title from the first prompt, and it takes a new turn that resumes
// claude's conversation.
func TestRelease1FolderLoads(t *testing.T) {
	const id = "510ade1d-82b6-4b52-8f8b-77f6feba08c7"
	dir := copyDir(t, "testdata/release1")
	original, err := os.ReadFile(filepath.Join(dir, id, eventsFile))
	require.NoError(t, err)
	runner := &fakeRunner{script: quickTurn}
	m := newManager(t, Config{Dir: dir, Runner: runner})

	got, err := m.Get(id)
	require.NoError(t, err)
	assert.Equal(t, "The VM is not answering ssh: check the disk", got.Title)
	assert.Equal(t, time.Date(2026, 3, 14, 9, 26, 1, 0, time.UTC), got.CreatedAt)
	assert.Equal(t, int64(12), got.LastEventID)
	assert.Equal(t, StateIdle, got.State)

	all := waitDone(t, m, id, 0)
	assert.Len(t, all, 5, "replay stops at the first done; the log is whole")
	require.NoError(t, m.Prompt(id, "and now?", "alice"))
	more := waitDone(t, m, id, 12)
	assert.Equal(t, int64(13), more[0].ID)
	assert.True(t, runner.seen()[0].Resume, "the release-1 conversation resumes")

	now, err := os.ReadFile(filepath.Join(dir, id, eventsFile))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(now), string(original)), "the old lines are untouched")
	var meta struct {
		ID        string    `json:"id"`
		CreatedAt time.Time `json:"created_at"`
	}
	b, err := os.ReadFile(filepath.Join(dir, id, metaFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &meta))
	assert.Equal(t, id, meta.ID, "release 1 can still read it")
	assert.Equal(t, got.CreatedAt, meta.CreatedAt)
}

// TestSummaryRecovers: whatever happened to session.json (missing, stale
// behind the log, from a crashed write, left beside a temporary file) the
// session comes back whole from its log.
func TestSummaryRecovers(t *testing.T) {
	const id = "510ade1d-82b6-4b52-8f8b-77f6feba08c7"
	extra := `{"id":13,"event":"verb","time":"2026-03-14T10:00:00Z","data":{"verb":"status","actor":"carol","duration_ms":5}}` + "\n"
	tests := []struct {
		name    string
		damage  func(t *testing.T, sdir string)
		last    int64
		created time.Time
	}{
		{"missing", func(t *testing.T, sdir string) {
			require.NoError(t, os.Remove(filepath.Join(sdir, metaFile)))
		}, 12, time.Date(2026, 3, 14, 9, 26, 3, 0, time.UTC)},
		{"stale", func(t *testing.T, sdir string) {
			f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.WriteString(extra)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, 13, time.Date(2026, 3, 14, 9, 26, 1, 0, time.UTC)},
		{"crashed-write", func(t *testing.T, sdir string) {
			b, err := os.ReadFile(filepath.Join(sdir, metaFile))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(sdir, metaFile), b[:len(b)/2], 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(sdir, ".session.json-123"), b[:10], 0o600))
		}, 12, time.Date(2026, 3, 14, 9, 26, 3, 0, time.UTC)},
		{"empty", func(t *testing.T, sdir string) {
			require.NoError(t, os.WriteFile(filepath.Join(sdir, metaFile), nil, 0o600))
		}, 12, time.Date(2026, 3, 14, 9, 26, 3, 0, time.UTC)},
		{"other-id", func(t *testing.T, sdir string) {
			require.NoError(t, os.WriteFile(filepath.Join(sdir, metaFile), []byte(`{"id":"`+uuid.New()+`","created_at":"2020-01-01T00:00:00Z"}`), 0o600))
		}, 12, time.Date(2026, 3, 14, 9, 26, 3, 0, time.UTC)},
		{"torn-tail", func(t *testing.T, sdir string) {
			f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.WriteString(extra[:40])
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, 12, time.Date(2026, 3, 14, 9, 26, 1, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, "testdata/release1")
			// A first start writes the summary; then it is damaged.
			m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
			require.NoError(t, err)
			_, err = m.Rename(id, "disk incident")
			require.NoError(t, err)
			require.NoError(t, m.Close())
			tt.damage(t, filepath.Join(dir, id))

			m = newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
			got, err := m.Get(id)
			require.NoError(t, err)
			assert.Equal(t, tt.last, got.LastEventID)
			assert.Equal(t, tt.created, got.CreatedAt)
			sub, err := m.Attach(id, 0)
			require.NoError(t, err)
			rep := replayed(t, sub)
			sub.Close()
			require.Len(t, rep, int(tt.last))
			require.NoError(t, m.Prompt(id, "again", "alice"))
			more := waitDone(t, m, id, tt.last)
			assert.Equal(t, tt.last+1, more[0].ID)
			require.NoError(t, m.Close())

			left, err := filepath.Glob(filepath.Join(dir, id, ".session.json-*"))
			require.NoError(t, err)
			assert.Empty(t, left, "a crashed write's temporary file is removed")

			// And the summary written now is trusted at the next start.
			sum, fresh, err := readSummary(filepath.Join(dir, id), id)
			require.NoError(t, err)
			assert.True(t, fresh)
			assert.Equal(t, more[len(more)-1].ID, sum.LastEventID)
		})
	}
}

// TestStartReadsSummariesOnly: with fresh summaries, start-up never reads
// a log. The log is swapped for garbage of the same length and time: the
// session is still listed from its summary, and only an attach reads (and
// refuses) the file.
func TestStartReadsSummariesOnly(t *testing.T) {
	const id = "510ade1d-82b6-4b52-8f8b-77f6feba08c7"
	dir := copyDir(t, "testdata/release1")
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	require.NoError(t, err)
	require.NoError(t, m.Close())
	logPath := filepath.Join(dir, id, eventsFile)
	fi, err := os.Stat(logPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(logPath, []byte(strings.Repeat("?", int(fi.Size()))), 0o600))
	require.NoError(t, os.Chtimes(logPath, fi.ModTime(), fi.ModTime()))

	m = newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	assert.Equal(t, 0, m.loaded(), "no log is open after start")
	got, err := m.Get(id)
	require.NoError(t, err)
	assert.Equal(t, int64(12), got.LastEventID)
	assert.Equal(t, "The VM is not answering ssh: check the disk", got.Title)
	sub, err := m.Attach(id, 0)
	require.NoError(t, err)
	defer sub.Close()
	for range sub.Replay() {
		require.Fail(t, "garbage replayed as an event")
	}
	assert.Error(t, sub.ReplayErr())
}

// TestInterruptedTurnWithFreshSummary: the process died right after the
// summary said a turn was running: the turn is closed at start.
func TestInterruptedTurnWithFreshSummary(t *testing.T) {
	started := make(chan struct{}, 1)
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: untilCancelled(started)}})
	require.NoError(t, err)
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	<-started
	// Freeze the files as they are now: what a crash would leave.
	sdir := filepath.Join(dir, info.ID)
	snap := t.TempDir()
	require.NoError(t, os.CopyFS(snap, os.DirFS(sdir)))
	require.NoError(t, m.Close())
	require.NoError(t, os.RemoveAll(sdir))
	require.NoError(t, os.CopyFS(sdir, os.DirFS(snap)))
	// The summary was written right after the user event: cut the log
	// back to it, with the time it recorded, so the summary is fresh.
	sum, _, err := readSummary(sdir, info.ID)
	require.NoError(t, err)
	require.Equal(t, StateRunning, sum.State)
	logPath := filepath.Join(sdir, eventsFile)
	require.NoError(t, os.Truncate(logPath, sum.Size))
	mt := time.Unix(0, sum.LogModTime)
	require.NoError(t, os.Chtimes(logPath, mt, mt))
	_, fresh, err := readSummary(sdir, info.ID)
	require.NoError(t, err)
	require.True(t, fresh)

	m2 := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	got := waitDone(t, m2, info.ID, 0)
	assert.Equal(t, []event.Type{event.User, event.Error, event.Done}, types(got))
	assert.Equal(t, event.OutcomeError, doneOf(t, got[2]).Outcome)
	i, err := m2.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, StateIdle, i.State)
}
