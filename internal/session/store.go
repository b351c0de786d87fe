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
	"time"

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

// meta is what session.json holds.
type meta struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
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
func createFiles(dir string, m meta) (*os.File, error) {
	sdir, err := sessionDir(dir, m.ID)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("create session folder: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode session meta: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sdir, metaFile), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write session meta: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	return f, nil
}

// loaded is one session read back from disk.
type loaded struct {
	meta   meta
	events []event.Event
	file   *os.File // open for appending, positioned after the last good line
	size   int64    // the file's length: the end of its last good line
	// torn is set when the file ended in a partial or unreadable line that
	// was cut off.
	torn bool
}

// loadFiles reads session id's folder. A torn or unreadable tail (the
// process died mid-write) is cut off so later appends start on a clean line;
// ids must run 1, 2, 3…, and reading stops at the first that does not.
func loadFiles(dir, id string) (*loaded, error) {
	sdir, err := sessionDir(dir, id)
	if err != nil {
		return nil, err
	}
	mb, err := os.ReadFile(filepath.Join(sdir, metaFile))
	if err != nil {
		return nil, fmt.Errorf("read session meta: %w", err)
	}
	var m meta
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("decode session meta: %w", err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("session meta names %q, folder is %q", m.ID, id)
	}
	f, err := os.OpenFile(filepath.Join(sdir, eventsFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	l := &loaded{meta: m, file: f}
	good, err := readEvents(f, &l.events)
	if err != nil {
		f.Close()
		return nil, err
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("seek event log: %w", err)
	}
	if end != good {
		l.torn = true
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut torn event log: %w", err)
		}
	}
	l.size = good
	// Reopen for appending so every later write lands at the end.
	f.Close()
	l.file, err = os.OpenFile(filepath.Join(sdir, eventsFile), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	return l, nil
}

// readEvents decodes complete, well-formed lines with consecutive ids from r
// into events, and returns the byte offset just after the last good one.
func readEvents(r io.Reader, events *[]event.Event) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var good int64
	for {
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
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull) {
				return good, nil // a torn tail, or none
			}
			return good, fmt.Errorf("read event log: %w", err)
		}
		var e event.Event
		if json.Unmarshal(bytes.TrimSuffix(line, []byte{'\n'}), &e) != nil ||
			e.ID != int64(len(*events))+1 || e.Type == "" || len(e.Data) == 0 {
			return good, nil
		}
		*events = append(*events, e)
		good += int64(len(line))
	}
}

// encodeLine is one event as its events.jsonl line.
func encodeLine(e event.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return append(b, '\n'), nil
}
