package ipc

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Attack: someone who can write the socket directory (a shared emptyDir)
// swaps the freshly bound socket for a symlink to one of the keyholder's
// own files between bind and chmod, so that the chmod to 0660 opens that
// file (a private key) to the shared group.
func TestPublishNeverLeavesSocketDir(t *testing.T) {
	base := t.TempDir()
	secret := filepath.Join(base, "key")
	require.NoError(t, os.WriteFile(secret, []byte("private"), 0o600))
	dir := filepath.Join(base, "run")
	require.NoError(t, os.Mkdir(dir, 0o777))
	require.NoError(t, os.Symlink(secret, filepath.Join(dir, ".keyholder.sock.new")))

	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	_, err = publish(root, ".keyholder.sock.new", SocketName)
	require.Error(t, err)

	info, err := os.Stat(secret)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), "the file outside the socket directory keeps its mode")
	_, err = os.Lstat(filepath.Join(dir, SocketName))
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing was published under the socket's name")
}
