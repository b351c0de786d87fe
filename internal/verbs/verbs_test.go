package verbs

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// badVerbs are inputs that must never parse. They double as the fuzz seed
// corpus and as the socket API's refusal table (see internal/ipc).
var badVerbs = []struct {
	name string
	in   string
}{
	{"empty", ""},
	{"trailing-space", "status "},
	{"leading-space", " status"},
	{"upper", "STATUS"},
	{"title", "Status"},
	{"semicolon", "status;reboot"},
	{"and-and", "status && x"},
	{"pipe", "status|sh"},
	{"subshell", "$(id)"},
	{"backticks", "`id`"},
	{"newline", "status\n"},
	{"newline-inside", "status\nreset"},
	{"crlf", "status\r\n"},
	{"nul", "status\x00"},
	{"nul-inside", "sta\x00tus"},
	{"tab", "status\t"},
	{"cyrillic-s", "\u0455tatus"},
	{"fullwidth", "ｓｔａｔｕｓ"},
	{"zero-width", "sta\u200btus"},
	{"combining", "reset\u0301"},
	{"one-mib", strings.Repeat("a", 1<<20)},
	{"dotdot", "../"},
	{"dotdot-verb", "../status"},
	{"vmid-arg", "reset 103"},
	{"qm-line", "qm reset 102"},
	{"url-encoded-space", "status%20"},
	{"url-encoded-semicolon", "status%3Breboot"},
	{"prefix", "stat"},
	{"suffix", "statuss"},
	{"doubled", "statusstatus"},
	{"flag", "--skiplock"},
	{"verb-flag", "stop --skiplock"},
	{"glob", "st*"},
	{"dash", "-"},
	{"slash", "/status"},
	{"invalid-utf8", "status\xff"},
	{"latin1-e", "r\xe9set"},
	{"shutdown", "shutdown"},
	{"destroy", "destroy"},
	{"digits", "102"},
	{"underscore", "status_"},
	{"thirty-three", strings.Repeat("z", 33)},
	{"guest-exec-upper", "Guest-exec"},
	{"guest-exec-underscore", "guest_exec"},
	{"double-dash", "guest--exec"},
	{"trailing-dash", "guest-"},
	{"leading-dash", "-status"},
	{"en-dash", "guest–exec"},
	{"guest-exec-arg", "guest-exec WyJpZCJd"},
	{"unlock-skiplock", "unlock --skiplock"},
}

func TestParseRefusesBadVerbs(t *testing.T) {
	require.GreaterOrEqual(t, len(badVerbs), 30)
	for _, tc := range badVerbs {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Parse(tc.in)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrUnknown))
			assert.Equal(t, Verb{}, v)
			assert.Contains(t, err.Error(), "allowed verbs are status, forensics, reset, stop, start, cycle, screenshot, console, guest, tasks, unlock, guest-exec")
			assert.LessOrEqual(t, len(err.Error()), 256, "a refusal must not echo hostile input at length")
		})
	}
}

func TestParseAcceptsTheTable(t *testing.T) {
	tests := []struct {
		in       string
		mutating bool
	}{
		{"status", false},
		{"forensics", false},
		{"reset", true},
		{"stop", true},
		{"start", true},
		{"cycle", true},
		{"screenshot", false},
		{"console", false},
		{"guest", false},
		{"tasks", false},
		{"unlock", true},
		{"guest-exec", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			v, err := Parse(tc.in)
			require.NoError(t, err)
			assert.Equal(t, Name(tc.in), v.Name)
			assert.Equal(t, tc.mutating, v.Mutating)
			assert.NotEmpty(t, v.Summary)
		})
	}
	assert.Len(t, All(), len(tests))
}

func TestQMArgs(t *testing.T) {
	tests := []struct {
		verb Name
		want [][]string
	}{
		{Status, [][]string{{"status", "102", "--verbose"}}},
		{Forensics, nil},
		{Reset, [][]string{{"reset", "102"}}},
		{Stop, [][]string{{"stop", "102"}}},
		{Start, [][]string{{"start", "102"}}},
		{Cycle, [][]string{{"stop", "102"}, {"start", "102"}}},
		{Screenshot, nil},
		{Console, nil},
		{Guest, nil},
		{Tasks, nil},
		{Unlock, [][]string{{"unlock", "102"}}},
		{GuestExec, nil},
	}
	for _, tc := range tests {
		t.Run(string(tc.verb), func(t *testing.T) {
			v, err := Parse(string(tc.verb))
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.QMArgs(102))
			for _, args := range v.QMArgs(102) {
				for _, a := range args {
					assert.NotEqual(t, "--skiplock", a)
				}
			}
		})
	}
}

func TestQMArgsDoesNotAliasTable(t *testing.T) {
	v, err := Parse("reset")
	require.NoError(t, err)
	v.QMArgs(102)[0][0] = "destroy"
	assert.Equal(t, [][]string{{"reset", "103"}}, v.QMArgs(103))
}

func TestCheckVMID(t *testing.T) {
	for _, id := range []int{100, 102, 999999999} {
		assert.NoError(t, CheckVMID(id), id)
	}
	for _, id := range []int{-1, 0, 99, 1000000000} {
		assert.ErrorIs(t, CheckVMID(id), ErrBadVMID, id)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range badVerbs {
		f.Add(tc.in)
	}
	for _, n := range Names() {
		f.Add(string(n))
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrUnknown) {
				t.Fatalf("error does not wrap ErrUnknown: %v", err)
			}
			if len(err.Error()) > 256 {
				t.Fatalf("refusal echoes %d bytes", len(err.Error()))
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("refusal is not valid UTF-8: %q", err.Error())
			}
			return
		}
		if string(v.Name) != s {
			t.Fatalf("Parse(%q) = %q: accepted a different name", s, v.Name)
		}
	})
}

func TestCaps(t *testing.T) {
	for _, v := range All() {
		t.Run(string(v.Name), func(t *testing.T) {
			assert.Equal(t, v.Name == GuestExec, v.TakesArgs, "guest-exec alone takes arguments")
			switch v.Name {
			case GuestExec:
				assert.EqualValues(t, 16<<10, v.MaxBody)
			default:
				assert.EqualValues(t, 4<<10, v.MaxBody)
			}
			switch v.Name {
			case Screenshot:
				assert.Equal(t, "image/png", v.ContentType)
				assert.Equal(t, 8<<20, v.MaxOutput)
			default:
				assert.Empty(t, v.ContentType)
				assert.Equal(t, 1<<20, v.MaxOutput)
			}
			assert.LessOrEqual(t, len(v.Name), MaxLen)
		})
	}
}
