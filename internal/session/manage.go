package session

import (
	"errors"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what the operator names and searches.
const (
	// MaxTitleRunes is the longest title a rename accepts.
	MaxTitleRunes = 200
	// MaxQueryBytes is the longest search string accepted.
	MaxQueryBytes = 256
)

// Errors of rename and search, checked with errors.Is.
var (
	ErrEmptyTitle   = errors.New("empty title")
	ErrTitleTooLong = errors.New("title over 200 characters")
	ErrBadTitle     = errors.New("title must be valid UTF-8 without control characters")
	ErrBadQuery     = errors.New("search must be valid UTF-8 of at most 256 bytes")
)

// Query selects sessions for Search.
type Query struct {
	// Archived lists the archived sessions instead of the others.
	Archived bool
	// Text, when not empty, keeps the sessions whose title or one of whose
	// prompts contains it, case folded; it is plain text, never a pattern.
	Text string
}

// Search describes the sessions q selects, newest first. It reads the
// summaries only, never a log.
func (m *Manager) Search(q Query) ([]Info, error) {
	if len(q.Text) > MaxQueryBytes || !utf8.ValidString(q.Text) {
		return nil, ErrBadQuery
	}
	needle := strings.ToLower(strings.TrimSpace(q.Text))
	infos := []Info{}
	for _, s := range m.all() {
		s.mu.Lock()
		if s.sum.Archived == q.Archived && (needle == "" || s.matchesLocked(needle)) {
			infos = append(infos, s.info())
		}
		s.mu.Unlock()
	}
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].CreatedAt.Equal(infos[j].CreatedAt) {
			return infos[i].CreatedAt.After(infos[j].CreatedAt)
		}
		return infos[i].ID < infos[j].ID
	})
	return infos, nil
}

// matchesLocked reports whether s's title or one of its indexed prompts
// contains needle (already lower case). s.mu must be held.
func (s *sess) matchesLocked(needle string) bool {
	if strings.Contains(strings.ToLower(s.sum.Title), needle) {
		return true
	}
	for _, p := range s.index.prompts {
		if strings.Contains(strings.ToLower(p), needle) {
			return true
		}
	}
	return false
}

// checkTitle validates a title the operator gives, trimmed of surrounding
// space.
func checkTitle(t string) (string, error) {
	if !utf8.ValidString(t) {
		return "", ErrBadTitle
	}
	t = strings.TrimSpace(t)
	if t == "" {
		return "", ErrEmptyTitle
	}
	if utf8.RuneCountInString(t) > MaxTitleRunes {
		return "", ErrTitleTooLong
	}
	for _, r := range t {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", ErrBadTitle
		}
	}
	return t, nil
}

// Rename sets session id's title; it is written to session.json before
// Rename returns, so it survives a restart.
func (m *Manager) Rename(id, t string) (Info, error) {
	t, err := checkTitle(t)
	if err != nil {
		return Info{}, err
	}
	return m.change(id, func(s *sess) error {
		s.sum.Title = t
		s.sum.Renamed = true
		return nil
	})
}

// Archive hides session id from the list; its files are kept, and Restore
// brings it back. A session with a running turn is ErrBusy.
func (m *Manager) Archive(id string) (Info, error) {
	return m.change(id, func(s *sess) error {
		if s.turn != nil {
			return ErrBusy
		}
		s.sum.Archived = true
		return nil
	})
}

// Restore un-archives session id.
func (m *Manager) Restore(id string) (Info, error) {
	return m.change(id, func(s *sess) error {
		s.sum.Archived = false
		s.sum.RestoredAt = m.now().UTC()
		return nil
	})
}

// change applies fn to session id's summary and writes it.
func (m *Manager) change(id string, fn func(*sess) error) (Info, error) {
	s, err := m.lookup(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Info{}, ErrClosed
	}
	if err := m.freshLocked(s); err != nil {
		return Info{}, err
	}
	before := s.sum
	if err := fn(s); err != nil {
		return Info{}, err
	}
	sum := s.sum
	sum.LastEventID = s.savedLast
	sum.Prompts = s.index.prompts
	if err := writeSummary(s.dir, s.file, &sum); err != nil {
		// Not saved, not done: the operator is told and can try again;
		// nothing in memory differs from the disk.
		s.sum = before
		m.log.Error("write session summary", "session", s.id, "error", err)
		return Info{}, err
	}
	return s.info(), nil
}
