package session

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ids lists the infos' ids.
func ids(infos []Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.ID
	}
	return out
}

// TestRenameArchiveSurviveRestart: a rename and an archive are on disk when
// the call returns; after a restart the session keeps its title, stays out
// of the list, is listed with Archived, and a restore brings it back.
func TestRenameArchiveSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	require.NoError(t, err)
	a, err := m.Create()
	require.NoError(t, err)
	b, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(a.ID, "check the disk", "alice"))
	waitDone(t, m, a.ID, 0)
	got, err := m.Rename(a.ID, "  Disk full on /var  ")
	require.NoError(t, err)
	assert.Equal(t, "Disk full on /var", got.Title)
	got, err = m.Archive(b.ID)
	require.NoError(t, err)
	assert.True(t, got.Archived)
	require.NoError(t, m.Close())

	m = newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	got, err = m.Get(a.ID)
	require.NoError(t, err)
	assert.Equal(t, "Disk full on /var", got.Title)
	assert.Equal(t, []string{a.ID}, ids(m.List()))
	archived, err := m.Search(Query{Archived: true})
	require.NoError(t, err)
	assert.Equal(t, []string{b.ID}, ids(archived))
	assert.ErrorIs(t, m.Prompt(b.ID, "hi", "alice"), ErrArchived)

	_, err = m.Restore(b.ID)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{a.ID, b.ID}, ids(m.List()))
	// A later prompt does not undo the rename.
	require.NoError(t, m.Prompt(a.ID, "and the memory", "alice"))
	waitDone(t, m, a.ID, 5)
	got, err = m.Get(a.ID)
	require.NoError(t, err)
	assert.Equal(t, "Disk full on /var", got.Title)
}

// TestArchiveRunningTurnRefused: a session cannot be hidden while its turn
// runs.
func TestArchiveRunningTurnRefused(t *testing.T) {
	started := make(chan struct{}, 1)
	m := newManager(t, Config{Runner: &fakeRunner{script: untilCancelled(started)}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	<-started
	_, err = m.Archive(info.ID)
	assert.ErrorIs(t, err, ErrBusy)
	require.NoError(t, m.Cancel(info.ID))
	waitDone(t, m, info.ID, 0)
}

// TestSearch finds sessions by title and by any operator prompt, case
// folded, as plain text, from the summaries (also after a restart), and
// refuses what it cannot search.
func TestSearch(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	require.NoError(t, err)
	mk := func(prompts ...string) string {
		info, err := m.Create()
		require.NoError(t, err)
		for _, p := range prompts {
			require.NoError(t, m.Prompt(info.ID, p, "alice"))
			waitDone(t, m, info.ID, info.LastEventID)
			info, err = m.Get(info.ID)
			require.NoError(t, err)
		}
		return info.ID
	}
	disk := mk("The disk is full", "what fills /var/log?")
	oom := mk("OOM killer again [postgres] (.*)")
	empty := mk()
	_, err = m.Rename(empty, "Night shift notes")
	require.NoError(t, err)
	require.NoError(t, m.Close())

	m = newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	tests := []struct {
		name, q string
		want    []string
	}{
		{"title", "disk IS", []string{disk}},
		{"later-prompt", "/VAR/log", []string{disk}},
		{"renamed", "night", []string{empty}},
		{"regex-literal", "[postgres] (.*)", []string{oom}},
		{"regex-not-pattern", "o.m", []string{}},
		{"none", "nothing like it", []string{}},
		{"all", "", []string{empty, oom, disk}},
		{"space-only", "   ", []string{empty, oom, disk}},
		{"unicode", "é", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Search(Query{Text: tt.q})
			require.NoError(t, err)
			assert.ElementsMatch(t, tt.want, ids(got))
		})
	}
	for name, q := range map[string]string{
		"huge":        strings.Repeat("a", MaxQueryBytes+1),
		"invalid-utf": "disk\xff",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := m.Search(Query{Text: q})
			assert.ErrorIs(t, err, ErrBadQuery)
		})
	}
}

// TestRenameRefusals: titles the operator could not have meant are refused
// with a reason, and the old title stays.
func TestRenameRefusals(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}})
	info, err := m.Create()
	require.NoError(t, err)
	_, err = m.Rename(info.ID, "kept")
	require.NoError(t, err)
	tests := []struct {
		name, title string
		want        error
	}{
		{"empty", "", ErrEmptyTitle},
		{"spaces", " \t ", ErrEmptyTitle},
		{"10KiB", strings.Repeat("x", 10<<10), ErrTitleTooLong},
		{"newline", "a\nb", ErrBadTitle},
		{"escape", "a\x1b[31mred", ErrBadTitle},
		{"nul", "a\x00b", ErrBadTitle},
		{"invalid-utf8", "a\xffb", ErrBadTitle},
		{"bidi-c1", "a\u0085b", ErrBadTitle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Rename(info.ID, tt.title)
			assert.ErrorIs(t, err, tt.want)
			got, err := m.Get(info.ID)
			require.NoError(t, err)
			assert.Equal(t, "kept", got.Title)
		})
	}
	_, err = m.Rename(info.ID, strings.Repeat("é", MaxTitleRunes))
	assert.NoError(t, err, "the limit counts characters")
}

// TestRetentionArchivesNeverDeletes: a session with no event for the
// retention period leaves the list but keeps its files and can be restored;
// a session in use is left alone.
func TestRetentionArchivesNeverDeletes(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}, RetainFor: 24 * time.Hour, Now: clk.Now})
	old, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(old.ID, "old incident", "alice"))
	waitDone(t, m, old.ID, 0)
	watched, err := m.Create()
	require.NoError(t, err)
	sub, err := m.Attach(watched.ID, 0)
	require.NoError(t, err)
	defer sub.Close()

	m.sweep(clk.Now().Add(2 * time.Hour))
	assert.Len(t, m.List(), 2, "not old enough")
	m.sweep(clk.Now().Add(48 * time.Hour))
	assert.Equal(t, []string{watched.ID}, ids(m.List()))
	got, err := m.Get(old.ID)
	require.NoError(t, err)
	assert.True(t, got.Archived)
	sub2, err := m.Attach(old.ID, 0)
	require.NoError(t, err)
	assert.Len(t, replayed(t, sub2), 5, "every event is kept")
	sub2.Close()
	_, err = m.Restore(old.ID)
	require.NoError(t, err)
	assert.Len(t, m.List(), 2)
	m.sweep(clk.Now().Add(time.Hour))
	assert.Len(t, m.List(), 2, "a restored session gets a full period again")
}
