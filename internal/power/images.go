package power

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

// The screenshots a session keeps: the web's own copy, written from the
// keyholder's answer into <sessions>/<id>/images/, outside the agent's
// folders, and served from there by GET /api/sessions/{id}/images/{name}.

// ImagesDir is the folder of a session's pictures, under its own folder.
const ImagesDir = "images"

// imageName is the only shape of a stored picture's name.
var imageName = regexp.MustCompile(`^screenshot-[0-9]{1,16}-[0-9a-f]{8}\.png$`)

// pngMagic starts every PNG (RFC 2083 §3.1).
var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// storeImage writes res's picture into the session's images folder and
// returns its name, or "" (logged) when there is no session to keep it in
// or it cannot be kept.
func (s *Service) storeImage(sessionID string, res Result) string {
	if sessionID == "" || s.sessionsDir == "" || !uuid.Valid(sessionID) || res.ContentType != verbs.ContentTypePNG {
		return ""
	}
	name, err := s.writeImage(sessionID, res.OutputBase64)
	if err != nil {
		s.log.Warn("screenshot not stored", "session_id", sessionID, "error", err)
		return ""
	}
	return name
}

func (s *Service) writeImage(sessionID, b64 string) (string, error) {
	if base64.StdEncoding.DecodedLen(len(b64)) > verbs.MaxImageOutput+2 {
		return "", errors.New("picture over its cap")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !bytes.HasPrefix(b, pngMagic) {
		return "", errors.New("not a PNG")
	}
	// The session's folder must exist: a picture never creates one.
	sdir := filepath.Join(s.sessionsDir, sessionID)
	if fi, err := os.Lstat(sdir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("no folder for session %s", sessionID)
	}
	dir := filepath.Join(sdir, ImagesDir)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "screenshot-" + strconv.FormatInt(s.now().UnixMilli(), 10) + "-" + hex.EncodeToString(rnd[:]) + ".png"
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return name, f.Close()
}

// ImagePath is the route of a stored picture.
func ImagePath(sessionID, name string) string {
	return "/api/sessions/" + sessionID + "/images/" + name
}

// serveImage answers GET /api/sessions/{id}/images/{name} with a picture
// the web stored in that session: image/png, nosniff. The id must be a UUID
// v4 and the name of the one shape storeImage makes, before any path is
// built; anything else is 404.
func (s *Service) serveImage(w http.ResponseWriter, r *http.Request, _ wire.Principal) {
	id, name := mux.Vars(r)["id"], mux.Vars(r)["name"]
	if s.sessionsDir == "" || !uuid.Valid(id) || !imageName.MatchString(name) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "no such image")
		return
	}
	root, err := os.OpenRoot(s.sessionsDir)
	if err != nil {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "no such image")
		return
	}
	defer root.Close()
	f, err := root.Open(filepath.Join(id, ImagesDir, name))
	if err != nil {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "no such image")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > verbs.MaxImageOutput {
		fail(w, http.StatusNotFound, wire.CodeNotFound, "no such image")
		return
	}
	h := w.Header()
	h.Set("Content-Type", verbs.ContentTypePNG)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, max-age=86400, immutable")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, f)
	}
}
