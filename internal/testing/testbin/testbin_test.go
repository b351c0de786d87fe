package testbin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildOnce(t *testing.T) {
	t.Cleanup(Cleanup)
	dir := Build(t, "breakglass/cmd/pve-gate")
	fi, err := os.Stat(filepath.Join(dir, "pve-gate"))
	require.NoError(t, err)
	assert.Equal(t, dir, Build(t, "breakglass/cmd/pve-gate"), "the same folder")
	again, err := os.Stat(filepath.Join(dir, "pve-gate"))
	require.NoError(t, err)
	assert.Equal(t, fi.ModTime(), again.ModTime(), "not built twice")
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(root, "go.mod"))
	assert.Equal(t, filepath.Join(root, ".tools", "node_modules", ".bin", "claude"), PinnedClaude(root))
}
