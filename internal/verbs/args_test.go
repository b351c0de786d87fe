package verbs

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goodArgvs are argvs guest-exec must carry unchanged, byte for byte.
var goodArgvs = []struct {
	name string
	argv []string
}{
	{"one", []string{"uptime"}},
	{"systemctl", []string{"systemctl", "restart", "sshd"}},
	{"shell-metachars", []string{"echo", "$(id) ; rm -rf /", "`id`", "a|b", "a&&b", "> /etc/passwd"}},
	{"quotes", []string{"printf", `"'\`}},
	{"spaces", []string{"ls", " leading", "trailing ", "in side"}},
	{"empty-later", []string{"printf", ""}},
	{"newlines", []string{"printf", "a\nb\r\n"}},
	{"control", []string{"printf", "\x01\x1b[31m\x7f"}},
	{"unicode", []string{"echo", "héllo", "日本語", "\u2028", "🙂"}},
	{"html", []string{"echo", "<script>&amp;"}},
	{"dash", []string{"--", "-rf", "--skiplock"}},
	{"max-count", strings.Split(strings.Repeat("a ", MaxArgs-1)+"a", " ")},
	{"max-one", []string{"echo", strings.Repeat("x", MaxArgLen)}},
	{"max-total", append([]string{"e"}, repeatArg(strings.Repeat("y", 273), 15)...)},
	{"max-escaped", append([]string{"e"}, repeatArg(strings.Repeat("\x01", 273), 15)...)},
}

func repeatArg(a string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = a
	}
	return out
}

// badArgvs are argvs ValidateArgs must refuse.
var badArgvs = []struct {
	name string
	argv []string
}{
	{"nil", nil},
	{"empty", []string{}},
	{"empty-command", []string{""}},
	{"seventeen", repeatArg("a", MaxArgs+1)},
	{"long-arg", []string{"echo", strings.Repeat("x", MaxArgLen+1)}},
	{"long-total", append([]string{"e"}, repeatArg(strings.Repeat("y", 274), 15)...)},
	{"nul", []string{"echo", "a\x00b"}},
	{"nul-command", []string{"\x00"}},
	{"invalid-utf8", []string{"echo", "\xff"}},
	{"surrogate", []string{"echo", "\xed\xa0\x80"}},
	{"overlong", []string{"echo", "\xc0\xaf"}},
}

func TestValidateArgs(t *testing.T) {
	for _, tc := range goodArgvs {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, ValidateArgs(tc.argv))
		})
	}
	for _, tc := range badArgvs {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateArgs(tc.argv)
			require.ErrorIs(t, err, ErrArgs)
			assert.LessOrEqual(t, len(err.Error()), 128, "a refusal must not quote the argv")
			assert.True(t, utf8.ValidString(err.Error()))
		})
	}
}

func TestCheckArgs(t *testing.T) {
	for _, v := range All() {
		t.Run(string(v.Name), func(t *testing.T) {
			if v.TakesArgs {
				assert.ErrorIs(t, v.CheckArgs(nil), ErrArgs)
				assert.NoError(t, v.CheckArgs([]string{"uptime"}))
				return
			}
			assert.NoError(t, v.CheckArgs(nil))
			assert.ErrorIs(t, v.CheckArgs([]string{}), ErrArgs, "even an empty list")
			assert.ErrorIs(t, v.CheckArgs([]string{"103"}), ErrArgs)
		})
	}
}

func TestLineRoundTrip(t *testing.T) {
	ge, err := Parse("guest-exec")
	require.NoError(t, err)
	for _, tc := range goodArgvs {
		t.Run(tc.name, func(t *testing.T) {
			line, err := EncodeLine(ge, tc.argv)
			require.NoError(t, err)
			assert.LessOrEqual(t, len(line), MaxLineLen)
			assert.True(t, strings.HasPrefix(line, "guest-exec "))
			assert.Equal(t, 1, strings.Count(line, " "), "one space: the argv is one word")
			v, argv, err := ParseLine(line)
			require.NoError(t, err)
			assert.Equal(t, GuestExec, v.Name)
			assert.Equal(t, tc.argv, argv, "byte for byte")
		})
	}
	for _, v := range All() {
		if v.TakesArgs {
			continue
		}
		line, err := EncodeLine(v, nil)
		require.NoError(t, err)
		assert.Equal(t, string(v.Name), line)
		got, argv, err := ParseLine(line)
		require.NoError(t, err)
		assert.Equal(t, v.Name, got.Name)
		assert.Nil(t, argv)
	}
}

func TestEncodeLineRefuses(t *testing.T) {
	ge, err := Parse("guest-exec")
	require.NoError(t, err)
	for _, tc := range badArgvs {
		_, err := EncodeLine(ge, tc.argv)
		assert.ErrorIs(t, err, ErrArgs, tc.name)
	}
	st, err := Parse("status")
	require.NoError(t, err)
	_, err = EncodeLine(st, []string{"x"})
	assert.ErrorIs(t, err, ErrArgs)
	_, err = EncodeLine(Verb{Name: "destroy"}, nil)
	assert.ErrorIs(t, err, ErrUnknown)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// badLines are SSH command lines ParseLine must refuse, with the sentinel.
var badLines = []struct {
	name string
	in   string
	want error
}{
	{"bare", "guest-exec", ErrArgs},
	{"space-only", "guest-exec ", ErrArgs},
	{"two-spaces", "guest-exec  " + b64(`["id"]`), ErrArgs},
	{"trailing-space", "guest-exec " + b64(`["id"]`) + " ", ErrArgs},
	{"second-word", "guest-exec " + b64(`["id"]`) + " x", ErrArgs},
	{"raw-json", `guest-exec ["id"]`, ErrArgs},
	{"raw-argv", "guest-exec id", ErrArgs},
	{"padded", "guest-exec " + base64.URLEncoding.EncodeToString([]byte(`["idx"]`)), ErrArgs},
	{"std-alphabet", "guest-exec " + base64.RawStdEncoding.EncodeToString([]byte(`["??>"]`)), ErrArgs},
	{"trailing-bits", "guest-exec " + b64(`["id"]`)[:len(b64(`["id"]`))-1] + "B", ErrArgs},
	{"object", "guest-exec " + b64(`{"argv":["id"]}`), ErrArgs},
	{"string", "guest-exec " + b64(`"id"`), ErrArgs},
	{"null", "guest-exec " + b64(`null`), ErrArgs},
	{"empty-array", "guest-exec " + b64(`[]`), ErrArgs},
	{"number", "guest-exec " + b64(`[1]`), ErrArgs},
	{"nested", "guest-exec " + b64(`[["id"]]`), ErrArgs},
	{"null-elem", "guest-exec " + b64(`["id",null]`), ErrArgs},
	{"two-arrays", "guest-exec " + b64(`["id"]["x"]`), ErrArgs},
	{"trailing-garbage", "guest-exec " + b64(`["id"]x`), ErrArgs},
	{"not-canonical-space", "guest-exec " + b64(`[ "id" ]`), ErrArgs},
	{"not-canonical-escape", "guest-exec " + b64(`["\u0069d"]`), ErrArgs},
	{"invalid-utf8-in-json", "guest-exec " + b64("[\"\xff\"]"), ErrArgs},
	{"nul-escaped", "guest-exec " + b64(`["id","\u0000"]`), ErrArgs},
	{"too-long", "guest-exec " + strings.Repeat("A", MaxLineLen), ErrArgs},
	{"status-args", "status " + b64(`["id"]`), ErrUnknown},
	{"reset-vmid", "reset 103", ErrUnknown},
	{"upper", "GUEST-EXEC " + b64(`["id"]`), ErrUnknown},
	{"tab", "guest-exec\t" + b64(`["id"]`), ErrUnknown},
	{"empty", "", ErrUnknown},
}

func TestParseLineRefuses(t *testing.T) {
	for _, tc := range badLines {
		t.Run(tc.name, func(t *testing.T) {
			v, argv, err := ParseLine(tc.in)
			require.ErrorIs(t, err, tc.want)
			assert.Equal(t, Verb{}, v)
			assert.Nil(t, argv)
			assert.LessOrEqual(t, len(err.Error()), 256, "a refusal must not echo hostile input at length")
		})
	}
}

func FuzzParseLine(f *testing.F) {
	for _, tc := range badLines {
		f.Add(tc.in)
	}
	ge, _ := Parse("guest-exec")
	for _, tc := range goodArgvs {
		line, _ := EncodeLine(ge, tc.argv)
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		v, argv, err := ParseLine(line)
		if err != nil {
			if !errors.Is(err, ErrArgs) && !errors.Is(err, ErrUnknown) {
				t.Fatalf("error wraps neither sentinel: %v", err)
			}
			if len(err.Error()) > 256 || !utf8.ValidString(err.Error()) {
				t.Fatalf("refusal echoes input: %q", err.Error())
			}
			return
		}
		if err := v.CheckArgs(argv); err != nil {
			t.Fatalf("accepted an argv CheckArgs refuses: %v", err)
		}
		again, err := EncodeLine(v, argv)
		if err != nil || again != line {
			t.Fatalf("accepted %q, a line EncodeLine would not make (%q, %v)", line, again, err)
		}
	})
}

func FuzzArgsRoundTrip(f *testing.F) {
	for _, tc := range goodArgvs {
		f.Add(strings.Join(tc.argv, "\x1f"), byte(0x1f))
	}
	for _, tc := range badArgvs {
		f.Add(strings.Join(tc.argv, "\x1f"), byte(0x1f))
	}
	ge, _ := Parse("guest-exec")
	f.Fuzz(func(t *testing.T, joined string, sep byte) {
		argv := strings.Split(joined, string([]byte{sep}))
		line, err := EncodeLine(ge, argv)
		if err != nil {
			if !errors.Is(err, ErrArgs) {
				t.Fatalf("error does not wrap ErrArgs: %v", err)
			}
			if ValidateArgs(argv) == nil {
				t.Fatalf("EncodeLine refused an argv ValidateArgs accepts: %v", err)
			}
			return
		}
		if len(line) > MaxLineLen {
			t.Fatalf("line of %d bytes, over MaxLineLen", len(line))
		}
		v, got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine refused EncodeLine's own line: %v", err)
		}
		if v.Name != GuestExec || len(got) != len(argv) {
			t.Fatalf("round trip changed the argv: %q → %q", argv, got)
		}
		for i := range argv {
			if got[i] != argv[i] {
				t.Fatalf("argument %d changed: %q → %q", i+1, argv[i], got[i])
			}
		}
	})
}
