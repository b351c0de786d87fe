package session

import (
	"bytes"
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
