package notify

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"breakglass/internal/event"
)

// safeText is every character a message's title or body may hold: the
// fixed sentences and a verb or tool name (nameRE), nothing else.
var safeText = regexp.MustCompile(`^[A-Za-z0-9 _.:,'-]*$`)

var sessionLink = regexp.MustCompile(`^/(#/s/[0-9a-f-]{36})?$`)

// FuzzMessageFor: whatever an event's data holds (an agent can choose a
// tool's input, and so parts of a permission or approval event), the
// message is the fixed text around a plain name, and its link is the page
// or a session's deep link. Nothing longer than a name gets through.
func FuzzMessageFor(f *testing.F) {
	for _, seed := range []struct {
		typ, data string
		attached  int
	}{
		{"approval", `{"approval_id":"a","verb":"reset","state":"pending","args":["rm","-rf","/"]}`, 0},
		{"permission", `{"request_id":"r","tool":"Bash","state":"pending","input":{"command":"cat /etc/shadow"}}`, 1},
		{"done", `{"exit_code":0,"outcome":"success","duration_ms":5}`, 0},
		{"done", `{"outcome":"<script>"}`, 0},
		{"approval", `{"verb":"reset\ncurl evil","state":"pending"}`, 0},
		{"text", `{"delta":"secret"}`, 0},
	} {
		f.Add(seed.typ, seed.data, "0b6f3f5e-8f2a-4c39-9a43-2f1d3c9e7a10", seed.attached)
	}
	f.Fuzz(func(t *testing.T, typ, data, sid string, attached int) {
		m, ok := MessageFor(sid, event.Event{Type: event.Type(typ), Data: json.RawMessage(data)}, attached)
		if !ok {
			return
		}
		if !safeText.MatchString(m.Title) || !safeText.MatchString(m.Body) {
			t.Fatalf("unsafe text in %+v", m)
		}
		if !sessionLink.MatchString(m.URL) {
			t.Fatalf("link %q", m.URL)
		}
		if m.URL != "/" && !strings.HasSuffix(m.URL, sid) {
			t.Fatalf("link %q is not session %q's", m.URL, sid)
		}
		if len(m.Title)+len(m.Body) > 200 {
			t.Fatalf("message too long: %+v", m)
		}
	})
}
