package uuid

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzValid feeds arbitrary ids: only the canonical form of a
// UUID v4 (RFC 9562 §5.4) passes, and whatever passes is safe as one path
// element and as a map key (one spelling per id).
func FuzzValid(f *testing.F) {
	for _, s := range []string{New(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6BA7B810-9DAD-41D1-80B4-00C04FD430C8",
		"../../../../../../etc/passwd", "00000000-0000-4000-8000-000000000000", "00000000-0000-4000-c000-000000000000",
		"00000000-0000-4000-8000-00000000000/", "00000000-0000-4000-8000-0000000000.", "{00000000-0000-4000-8000-000000000000}",
		"00000000000040008000000000000000", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !Valid(s) {
			return
		}
		require.Len(t, s, 36)
		require.Equal(t, strings.ToLower(s), s, "one spelling per id")
		require.Equal(t, filepath.Base(s), s, "one path element")
		require.False(t, strings.ContainsAny(s, "/\\.%\x00"))
		for i, c := range s {
			switch i {
			case 8, 13, 18, 23:
				require.Equal(t, '-', c)
			case 14:
				require.Equal(t, '4', c, "version 4")
			case 19:
				require.Contains(t, "89ab", string(c), "RFC 9562 variant")
			default:
				require.Contains(t, "0123456789abcdef", string(c))
			}
		}
	})
}
