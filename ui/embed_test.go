package ui

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFSHoldsThePage(t *testing.T) {
	fsys := FS()
	index, err := fs.ReadFile(fsys, "index.html")
	require.NoError(t, err, "ui/dist/index.html missing: run make ui")

	for _, name := range []string{"manifest.json", "icon-192.png", "icon-512.png", "icon-maskable-512.png", "apple-touch-icon.png", "icon.svg"} {
		t.Run(name, func(t *testing.T) {
			b, err := fs.ReadFile(fsys, name)
			require.NoError(t, err)
			assert.NotEmpty(t, b)
		})
	}

	t.Run("assets-referenced-exist", func(t *testing.T) {
		refs := regexp.MustCompile(`(?:src|href)="/(assets/[^"]+)"`).FindAllStringSubmatch(string(index), -1)
		require.NotEmpty(t, refs, "index.html references no built assets")
		for _, m := range refs {
			_, err := fs.Stat(fsys, m[1])
			assert.NoError(t, err, m[1])
		}
	})

	t.Run("assets-hashed", func(t *testing.T) {
		// The server caches assets/ for a long time: each name must change
		// with its content.
		entries, err := fs.ReadDir(fsys, "assets")
		require.NoError(t, err)
		hashed := regexp.MustCompile(`^[A-Za-z0-9_-]+-[A-Za-z0-9_-]{8}\.(js|css)$`)
		for _, e := range entries {
			assert.Regexp(t, hashed, e.Name())
		}
	})

	t.Run("pwa-meta", func(t *testing.T) {
		for _, want := range []string{`rel="manifest"`, `name="theme-color"`, `viewport-fit=cover`, `apple-mobile-web-app-capable`, `apple-touch-icon`} {
			assert.True(t, strings.Contains(string(index), want), "index.html lacks %s", want)
		}
	})

	t.Run("no-sources-embedded", func(t *testing.T) {
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			assert.False(t, strings.HasSuffix(path, ".map") || strings.HasSuffix(path, ".svelte"), "source file embedded: %s", path)
			return nil
		})
		require.NoError(t, err)
	})
}
