package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStreamAsksForAQuickReconnect: the stream opens with a `retry:` line,
// so a phone whose connection dropped resumes after ReconnectDelay rather
// than the browser's default of about 3 s.
func TestStreamAsksForAQuickReconnect(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	_, rd := e.attach(t, withTimeout(t), id, -1)
	line, err := rd.br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "retry: 1000", strings.TrimSuffix(line, "\n"))
}
