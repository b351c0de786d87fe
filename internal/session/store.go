package session

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// Files of a session's folder.
const (
	metaFile   = "session.json"
	eventsFile = "events.jsonl"
)

// maxLine bounds one line of events.jsonl when it is read back.
const maxLine = 8 << 20

// summaryVersion marks a session.json that carries a summary. A file
// without it (written by release 1: only id and created_at) is rebuilt from
// the log.
const summaryVersion = 1

// Limits of the search index a summary carries: the operator's prompts,
// each cut to promptIndexBytes, at most promptIndexTotal bytes in all.
const (
	promptIndexBytes = 512
	promptIndexTotal = 8 << 10
)

// summary is what session.json holds (docs/sessions.md): the session's id
// and creation time (release 1's whole file), what the operator set
// (title when renamed, archived, mode), and what is derived from the log
// (the rest), trusted only while Size and LogModTime match events.jsonl.
// Everything derived is rebuilt from the log when it is missing or stale.
type summary struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// Summary is summaryVersion once the derived fields are present.
	Summary int `json:"summary,omitempty"`
	// Title is the operator's rename when Renamed, else the first prompt
	// cut to one line.
	Title   string `json:"title,omitempty"`
	Renamed bool   `json:"renamed,omitempty"`
	// State is running from a turn's `user` event to its `done`: a summary
	// found running at start is a turn the process died in.
	State       State  `json:"state,omitempty"`
	LastEventID int64  `json:"last_event_id"`
	Archived    bool   `json:"archived,omitempty"`
	Mode        string `json:"mode,omitempty"`
	// Size and LogModTime are events.jsonl's length and modification time
	// (Unix nanoseconds) when the summary was written.
	Size       int64 `json:"size"`
	LogModTime int64 `json:"log_mtime_ns,omitempty"`
	// UpdatedAt is the time of the last event (created_at when none).
	UpdatedAt time.Time `json:"updated_at"`
	// RestoredAt is when the operator last restored the session: retention
	// counts from it too, so a restored session is not archived again at
	// once.
	RestoredAt time.Time `json:"restored_at,omitzero"`
	// TurnStart is the time of the running turn's `user` event.
	TurnStart time.Time `json:"turn_start,omitzero"`
	// Conversation is set once claude reported a session: later turns
	// resume it.
	Conversation bool `json:"conversation,omitempty"`
	// Prompts is the search index: the operator's prompts, each cut.
	Prompts []string `json:"prompts,omitempty"`
}

// sessionDir returns the folder of session id under dir. id must have
// passed ValidID: this is the only place a path is built from it.
func sessionDir(dir, id string) (string, error) {
	if !uuid.Valid(id) {
		return "", ErrNotFound
	}
	return filepath.Join(dir, id), nil
}

// createFiles makes the folder of a new session with its session.json and an
// empty events.jsonl open for appending.
func createFiles(sdir string, sum summary) (*os.File, error) {
	if err := os.Mkdir(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("create session folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	if err := writeSummary(sdir, f, &sum); err != nil {
		f.Close()
		// The folder was made just now and holds nothing yet: leave no
		// half-made session behind (TestSessionsDiskFull).
		_ = os.Remove(filepath.Join(sdir, eventsFile))
		_ = os.Remove(sdir)
		return nil, err
	}
	return f, nil
}

// writeSummary stamps sum with the log's size and time (from f when open,
// else from the file) and replaces session.json atomically: a temporary
// file, synced, renamed over it. A crash leaves the old file or the new
// one, never half of one.
func writeSummary(sdir string, f *os.File, sum *summary) error {
	var fi os.FileInfo
	var err error
	if f != nil {
		fi, err = f.Stat()
	} else {
		fi, err = os.Stat(filepath.Join(sdir, eventsFile))
	}
	if err != nil {
		return fmt.Errorf("stat event log: %w", err)
	}
	sum.Summary = summaryVersion
	sum.Size = fi.Size()
	sum.LogModTime = fi.ModTime().UnixNano()
	b, err := json.Marshal(sum)
	if err != nil {
		return fmt.Errorf("encode session summary: %w", err)
	}
	tmp, err := os.CreateTemp(sdir, ".session.json-*")
	if err != nil {
		return fmt.Errorf("write session summary: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(sdir, metaFile))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write session summary: %w", werr)
	}
	return nil
}

// readSummary reads session id's session.json and says whether its derived
// fields still describe events.jsonl (fresh). A file that cannot be
// decoded (a crashed write of an older release, a damaged disk) or names
// another id comes back not fresh with only the id set: everything is
// rebuilt from the log.
func readSummary(sdir, id string) (sum summary, fresh bool, err error) {
	sum = summary{ID: id}
	lfi, lerr := os.Stat(filepath.Join(sdir, eventsFile))
	if lerr != nil && !errors.Is(lerr, os.ErrNotExist) {
		return sum, false, fmt.Errorf("stat event log: %w", lerr)
	}
	b, err := os.ReadFile(filepath.Join(sdir, metaFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return sum, false, nil
		}
		return sum, false, fmt.Errorf("read session summary: %w", err)
	}
	var got summary
	if json.Unmarshal(b, &got) != nil || got.ID != id {
		return sum, false, nil
	}
	if got.Summary != summaryVersion || lerr != nil {
		return got, false, nil
	}
	fresh = lfi.Size() == got.Size && lfi.ModTime().UnixNano() == got.LogModTime
	return got, fresh, nil
}

// rebuilt is what a full read of a log finds.
type rebuilt struct {
	last         int64 // the last good event's id
	size         int64 // the end of the last good line
	torn         bool  // the file went on past it (cut off)
	firstPrompt  string
	prompts      []string
	conversation bool
	first, final time.Time // times of the first and last events
	open         *event.Event
	openPrompt   bool
}

// rebuild reads session sdir's whole log, cuts a torn or unreadable tail off
// (the process died mid-write) so later appends start on a clean line, and
// derives the summary's fields. ids must run 1, 2, 3…, and reading stops at
// the first that does not.
func rebuild(sdir string) (rebuilt, error) {
	var r rebuilt
	f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return r, fmt.Errorf("open event log: %w", err)
	}
	defer f.Close()
	idx := promptIndex{}
	var open event.Event
	good, err := scanEvents(f, func(e event.Event) {
		r.last = e.ID
		if r.first.IsZero() {
			r.first = e.Time
		}
		r.final = e.Time
		switch e.Type {
		case event.User:
			open = e
			r.openPrompt = true
			text := userText(e)
			if r.firstPrompt == "" {
				r.firstPrompt = title(text)
			}
			idx.add(text)
		case event.Done:
			r.openPrompt = false
		case event.Session:
			r.conversation = true
		}
	})
	if err != nil {
		return r, err
	}
	if r.openPrompt {
		r.open = &open
	}
	r.prompts = idx.prompts
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return r, fmt.Errorf("seek event log: %w", err)
	}
	r.size = good
	if end != good {
		r.torn = true
		if err := f.Truncate(good); err != nil {
			return r, fmt.Errorf("cut torn event log: %w", err)
		}
	}
	return r, nil
}

// promptIndex gathers the prompts a summary keeps for search.
type promptIndex struct {
	prompts []string
	total   int
}

// add keeps text's start, while the index has room.
func (p *promptIndex) add(text string) {
	if text == "" || p.total >= promptIndexTotal {
		return
	}
	cut := cutUTF8(text, min(promptIndexBytes, promptIndexTotal-p.total))
	p.prompts = append(p.prompts, cut)
	p.total += len(cut)
}

// cutUTF8 is s's first n bytes or fewer, never splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// userText is a user event's prompt.
func userText(e event.Event) string {
	var d event.UserData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return ""
	}
	return d.Text
}

// readEvents decodes complete, well-formed lines with consecutive ids from r
// into events, and returns the byte offset just after the last good one.
func readEvents(r io.Reader, events *[]event.Event) (int64, error) {
	return scanEvents(r, func(e event.Event) { *events = append(*events, e) })
}

// scanEvents calls fn with each complete, well-formed line of r whose id
// follows the one before (from 1), and returns the byte offset just after
// the last such line. It stops at the first line that is not one.
func scanEvents(r io.Reader, fn func(event.Event)) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var good, want int64 = 0, 1
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull) {
				return good, nil // a torn tail, or none
			}
			return good, fmt.Errorf("read event log: %w", err)
		}
		e, ok := parseLine(line)
		if !ok && json.Unmarshal(bytes.TrimSuffix(line, []byte{'\n'}), &e) != nil {
			return good, nil
		}
		if e.ID != want || e.Type == "" || len(e.Data) == 0 {
			return good, nil
		}
		fn(e)
		want++
		good += int64(len(line))
	}
}

// readLine reads one line of at most maxLine bytes with its '\n'; a line
// without one at the end is io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// A long line: gather it whole, bounded.
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= maxLine {
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	return line, err
}

// lineID reads the id off the start of a line this package wrote
// (`{"id":N,…`) without decoding the rest; ok is false for any other shape.
func lineID(line []byte) (int64, bool) {
	const prefix = `{"id":`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return 0, false
	}
	rest := line[len(prefix):]
	i := bytes.IndexByte(rest, ',')
	if i <= 0 || i > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	return n, err == nil
}

// replayFile calls fn with every event of session sdir's log whose id is
// over after, reading the file up to byte end (a line boundary the log had
// reached when the snapshot was taken). fn returning false stops it.
func replayFile(sdir string, end, after int64, fn func(event.Event) bool) error {
	if end == 0 {
		return nil
	}
	f, err := os.Open(filepath.Join(sdir, eventsFile))
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.LimitReader(f, end), 64<<10)
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read event log: %w", err)
		}
		if id, ok := lineID(line); ok && id <= after {
			continue
		}
		e, ok := parseLine(line)
		if !ok {
			if err := json.Unmarshal(bytes.TrimSuffix(line, []byte{'\n'}), &e); err != nil {
				return fmt.Errorf("decode event log: %w", err)
			}
		}
		if e.ID <= after {
			continue
		}
		if !fn(e) {
			return nil
		}
	}
}

// parseLine decodes a line in the exact shape encodeLine writes
// (`{"id":N,"event":"T","time":"…","data":{…}}`) without the reflection of
// encoding/json, which dominates a replay; ok is false for any other shape,
// and the caller then decodes it the slow way. Data is copied: line belongs
// to the reader's buffer.
func parseLine(line []byte) (event.Event, bool) {
	var e event.Event
	line = bytes.TrimSuffix(line, []byte{'\n'})
	id, ok := lineID(line)
	if !ok {
		return e, false
	}
	rest := line[bytes.IndexByte(line, ',')+1:]
	const evKey, timeKey, dataKey = `"event":"`, `","time":"`, `","data":`
	if !bytes.HasPrefix(rest, []byte(evKey)) {
		return e, false
	}
	rest = rest[len(evKey):]
	i := bytes.Index(rest, []byte(timeKey))
	if i <= 0 || bytes.ContainsAny(rest[:i], `"\`) {
		return e, false
	}
	typ := rest[:i]
	if !utf8.Valid(typ) || bytes.IndexFunc(typ, func(r rune) bool { return r < 0x20 }) >= 0 {
		return e, false
	}
	rest = rest[i+len(timeKey):]
	j := bytes.Index(rest, []byte(dataKey))
	if j <= 0 {
		return e, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	if err != nil {
		return e, false
	}
	data := rest[j+len(dataKey):]
	if len(data) < 3 || data[0] != '{' || data[len(data)-1] != '}' {
		return e, false
	}
	data = data[:len(data)-1] // the record's closing brace
	if data[len(data)-1] != '}' || !json.Valid(data) {
		return e, false
	}
	e.ID, e.Type, e.Time = id, event.Type(typ), t
	e.Data = append(json.RawMessage(nil), data...)
	return e, true
}

// encodeLine is one event as its events.jsonl line.
func encodeLine(e event.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return append(b, '\n'), nil
}

// logEnds reads the first line of the log at path and its last whole line
// (a torn tail after it is left for the rebuild to cut), each within 64 KiB
// of its end of the file; ok is false when either cannot be read so.
func logEnds(path string, size int64) (first, last event.Event, ok bool) {
	const window = 64 << 10
	f, err := os.Open(path)
	if err != nil {
		return first, last, false
	}
	defer f.Close()
	head := make([]byte, min(size, window))
	if _, err := io.ReadFull(f, head); err != nil {
		return first, last, false
	}
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return first, last, false
	}
	if first, ok = decodeLine(head[:i+1]); !ok {
		return first, last, false
	}
	n := min(size, window)
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, size-n); err != nil {
		return first, last, false
	}
	end := bytes.LastIndexByte(tail, '\n')
	if end < 0 {
		return first, last, false
	}
	start := bytes.LastIndexByte(tail[:end], '\n')
	if start < 0 && n < size {
		return first, last, false // the last line is longer than the window
	}
	last, ok = decodeLine(tail[start+1 : end+1])
	return first, last, ok
}

// decodeLine is one line of the log as an event, if it is one.
func decodeLine(line []byte) (event.Event, bool) {
	if e, ok := parseLine(line); ok {
		return e, true
	}
	var e event.Event
	err := json.Unmarshal(bytes.TrimSuffix(line, []byte{'\n'}), &e)
	return e, err == nil && e.ID > 0 && e.Type != "" && len(e.Data) > 0
}
