package devstack

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestReadable(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	stamp := ts.Local().Format("15:04:05")
	tests := []struct {
		name, in, want string
	}{
		{"hclog-json",
			`[web] {"@level":"info","@message":"web listening","@module":"web","@timestamp":"2026-01-02T03:04:05.000000Z","addr":"127.0.0.1:1","sessions":0}` + "\n",
			stamp + " web              info  web listening addr=127.0.0.1:1 sessions=0\n"},
		{"quoted-values",
			`[keyholder] {"@level":"warn","@message":"refused","@module":"keyholder.verbs","@timestamp":"2026-01-02T03:04:05Z","why":"a b","n":null}` + "\n",
			stamp + " keyholder.verbs  warn  refused n=null why=\"a b\"\n"},
		{"not-json", "[web] panic: oops\n", "[web] panic: oops\n"},
		{"no-prefix", "plain line\n", "plain line\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := readableWriter{out: &out}.Write([]byte(tc.in))
			assert.NoError(t, err)
			assert.Equal(t, len(tc.in), n)
			assert.Equal(t, tc.want, out.String())
		})
	}
}
