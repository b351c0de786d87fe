package logtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Buffer collects JSON log lines; it is safe for concurrent writers. Its
// zero value is ready to use as an hclog Output.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// written, when set, is closed by the next write (see WaitFor).
	written chan struct{}
}

// Write appends p and wakes a WaitFor.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines decodes every line written so far; a line that is not JSON fails
// the test.
func (b *Buffer) Lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(b.String())))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line is not JSON: %q", sc.Text())
		out = append(out, m)
	}
	return out
}

// Where returns the lines whose field key equals value (e.g. "@message",
// or an audit line's "event").
func (b *Buffer) Where(t testing.TB, key string, value any) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range b.Lines(t) {
		if m[key] == value {
			out = append(out, m)
		}
	}
	return out
}

// WaitFor returns Where(key, value) once it is not empty, woken by each
// write, and fails the test if no such line is written within d.
func (b *Buffer) WaitFor(t testing.TB, key string, value any, d time.Duration) []map[string]any {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		b.mu.Lock()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		if lines := b.Where(t, key, value); len(lines) > 0 {
			return lines
		}
		select {
		case <-written:
		case <-timeout.C:
			t.Fatalf("no line with %s=%v within %v; log so far:\n%s", key, value, d, b.String())
			return nil
		}
	}
}
