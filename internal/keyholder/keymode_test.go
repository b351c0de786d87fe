package keyholder

import (
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKeyModeOK(t *testing.T) {
	cases := []struct {
		name  string
		perm  fs.FileMode
		owner int
		ok    bool
	}{
		{"owner-0600", 0o600, 10002, true},
		{"owner-0400", 0o400, 10002, true},
		{"root-0600", 0o600, 0, true},
		{"k8s-secret-root-0440", 0o440, 0, true},
		{"k8s-secret-root-0400", 0o400, 0, true},
		{"group-readable-not-root", 0o440, 10002, false},
		{"group-readable-0640", 0o640, 10002, false},
		{"root-0640-writable", 0o640, 0, false},
		{"root-0460-group-writable", 0o460, 0, false},
		{"root-0444-others", 0o444, 0, false},
		{"root-0040-owner-cannot-read", 0o040, 0, false},
		{"others-0604", 0o604, 10002, false},
		{"world-0666", 0o666, 0, false},
		{"unknown-owner-0440", 0o440, -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.ok, keyModeOK(tc.perm, tc.owner))
		})
	}
}
