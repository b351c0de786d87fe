package ui

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// FS returns the built page rooted at dist: index.html, manifest.json,
// icons, and assets/ whose file names carry a content hash (safe to cache for
// a long time; index.html is not).
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only on an invalid path; "dist" is a constant.
		panic("ui: " + err.Error())
	}
	return sub
}
