package session

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

// FuzzReadEvents feeds arbitrary bytes as events.jsonl: reading never
// panics, keeps only consecutive ids from 1, stops at a line boundary, and
// the kept prefix reads back to the same events.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte(`{"id":1,"event":"user","time":"2026-01-01T00:00:01Z","data":{"text":"hi","actor":"alice"}}` + "\n"))
	f.Add([]byte(`{"id":1,"event":"text","time":"2026-01-01T00:00:01Z","data":{"delta":"a"}}` + "\n" + `{"id":2,"event":"text","da`))
	f.Add([]byte(`{"id":2,"event":"text","time":"2026-01-01T00:00:01Z","data":{}}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var events []event.Event
		good, err := readEvents(bytes.NewReader(b), &events)
		require.NoError(t, err)
		require.LessOrEqual(t, good, int64(len(b)))
		if good > 0 {
			require.Equal(t, byte('\n'), b[good-1])
		}
		for i, e := range events {
			require.Equal(t, int64(i+1), e.ID)
		}
		var again []event.Event
		good2, err := readEvents(bytes.NewReader(b[:good]), &again)
		require.NoError(t, err)
		require.Equal(t, good, good2)
		require.Len(t, again, len(events))
	})
}

// FuzzParseLine: the fast line decoder used by replay never accepts a line
// that encoding/json reads differently, and accepts every line this
// package writes.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"id":1,"event":"user","time":"2026-01-01T00:00:01Z","data":{"text":"hi","actor":"alice"}}` + "\n"))
	f.Add([]byte(`{"id":2,"event":"text","time":"2026-01-01T00:00:01.123456789Z","data":{"delta":"}\"x"}}`))
	f.Add([]byte(`{"id":3,"event":"text","time":"2026-01-01T00:00:01Z","data":{"a":1},"x":{}}`))
	f.Add([]byte(`{"id":4,"event":"te\"xt","time":"2026-01-01T00:00:01Z","data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseLine(b)
		if !ok {
			return
		}
		var want event.Event
		dec := json.NewDecoder(bytes.NewReader(bytes.TrimSuffix(b, []byte{'\n'})))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&want), "accepted a line encoding/json refuses: %q", b)
		require.False(t, dec.More(), "accepted trailing data: %q", b)
		require.Equal(t, want.ID, got.ID)
		require.Equal(t, want.Type, got.Type)
		require.True(t, want.Time.Equal(got.Time))
		require.JSONEq(t, string(want.Data), string(got.Data))
		again, err := encodeLine(got)
		require.NoError(t, err)
		if back, ok := parseLine(again); ok {
			require.Equal(t, got.ID, back.ID)
		} else {
			// Only a type encoding/json escapes takes the slow path.
			typ, _ := json.Marshal(string(got.Type))
			require.Contains(t, string(typ), `\`, "refused its own line %q", again)
		}
	})
}
