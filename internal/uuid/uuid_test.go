package uuid

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"v4", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", true},
		{"variant-b", "0b6f3c1e-8a5d-4e21-bc3a-5f0e2d7b9a11", true},
		{"empty", "", false},
		{"upper", "0B6F3C1E-8A5D-4E21-9C3A-5F0E2D7B9A11", false},
		{"v1", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", false},
		{"nil", "00000000-0000-0000-0000-000000000000", false},
		{"variant-c", "0b6f3c1e-8a5d-4e21-cc3a-5f0e2d7b9a11", false},
		{"braces", "{0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a1}", false},
		{"no-dashes", "0b6f3c1e8a5d4e219c3a5f0e2d7b9a11", false},
		{"dotdot", "../x", false},
		{"traversal-tail", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11/..", false},
		{"nul", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a1\x00", false},
		{"dash-moved", "0b6f3c1e8-a5d-4e21-9c3a-5f0e2d7b9a11", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.ok, Valid(tc.in))
		})
	}
}

func TestNewIsValidAndRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		assert.True(t, Valid(id), id)
		assert.Equal(t, strings.ToLower(id), id)
		assert.False(t, seen[id])
		seen[id] = true
	}
}
