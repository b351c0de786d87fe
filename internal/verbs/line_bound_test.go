package verbs

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseLineRefusesLongLineBeforeDecoding: a command line longer than
// any canonical guest-exec line is refused on its length alone, before any
// base64 or JSON decoding is spent on it (a later check would refuse it
// too, but only after decoding all of it).
func TestParseLineRefusesLongLineBeforeDecoding(t *testing.T) {
	for _, n := range []int{MaxLineLen - len("guest-exec ") + 1, 4 * MaxLineLen} {
		line := "guest-exec " + strings.Repeat("A", n)
		_, _, err := ParseLine(line)
		require.ErrorIs(t, err, ErrArgs)
		assert.Contains(t, err.Error(), "the command line is", "refused on its length, not after decoding")
	}
}
