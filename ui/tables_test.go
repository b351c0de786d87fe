package ui

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/verbs"
)

// The page's own tables (ui/src/lib) are held to the Go tables they copy,
// so a new event type or verb cannot be silently ignored by the page.

// jsArray returns the body of `export const <name> = Object.freeze([ … ]);`.
func jsArray(t *testing.T, file, name string) string {
	t.Helper()
	src, err := os.ReadFile(file)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?s)export const ` + name + ` = Object\.freeze\(\[(.*?)\]\);`).FindSubmatch(src)
	require.NotNil(t, m, "%s: no %s table", file, name)
	return string(m[1])
}

func TestUIEventTypesAreGos(t *testing.T) {
	body := jsArray(t, "src/lib/transcript.js", "EVENT_TYPES")
	var ui []string
	for _, m := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(body, -1) {
		ui = append(ui, m[1])
	}
	var goTypes []string
	for _, ty := range event.Types() {
		goTypes = append(goTypes, string(ty))
	}
	assert.Equal(t, goTypes, ui, "ui/src/lib/transcript.js EVENT_TYPES is internal/event's vocabulary, in order")

	// Each type is folded by the transcript, not dropped.
	src, err := os.ReadFile("src/lib/transcript.js")
	require.NoError(t, err)
	for _, ty := range goTypes {
		assert.Contains(t, string(src), "case '"+ty+"':", "transcript.js folds %q events", ty)
	}
}

func TestUIVerbsAreGos(t *testing.T) {
	body := jsArray(t, "src/lib/vm.js", "VERBS")
	type row struct {
		name              string
		mutating, argsToo bool
	}
	var ui []row
	for _, line := range strings.Split(body, "\n") {
		name := regexp.MustCompile(`name: '([a-z-]+)'`).FindStringSubmatch(line)
		if name == nil {
			continue
		}
		ui = append(ui, row{
			name:     name[1],
			mutating: strings.Contains(line, "mutating: true"),
			argsToo:  strings.Contains(line, "takesArgs: true"),
		})
	}
	var goRows []row
	for _, v := range verbs.All() {
		goRows = append(goRows, row{name: string(v.Name), mutating: v.Mutating, argsToo: v.TakesArgs})
	}
	assert.ElementsMatch(t, goRows, ui, "ui/src/lib/vm.js VERBS is internal/verbs' table: names, mutating, takesArgs")

	src, err := os.ReadFile("src/lib/vm.js")
	require.NoError(t, err)
	for name, want := range map[string]int{"MAX_ARGS": verbs.MaxArgs, "MAX_ARG_BYTES": verbs.MaxArgLen, "MAX_ARGV_BYTES": verbs.MaxArgsLen} {
		m := regexp.MustCompile(`export const ` + name + ` = ([0-9]+);`).FindSubmatch(src)
		require.NotNil(t, m, name)
		got, err := strconv.Atoi(string(m[1]))
		require.NoError(t, err)
		assert.Equal(t, want, got, "vm.js %s is the server's limit", name)
	}
}
