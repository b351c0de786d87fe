package pvegate_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"breakglass/internal/pvegate"
	"breakglass/internal/verbs"
)

// freeLock is a Locker that is never busy, for the fuzz target.
type freeLock struct{}

func (freeLock) TryLock() (func(), error) { return func() {}, nil }

// FuzzGateRun checks the gate's one promise about input: a command that is
// not exactly a verb name exits 2 and reaches no command; a verb name runs
// only that verb's commands.
func FuzzGateRun(f *testing.F) {
	for _, s := range []string{"", "status", "forensics", "reset", "stop", "start", "cycle",
		"status ", "STATUS", "status;reboot", "reset 103", "qm reset 102", "$(id)", "`id`",
		"status\n", "status\x00", "\u0455tatus", "stop --skiplock", "../status", strings.Repeat("a", 33)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := newFakeRunner(qm)
		g, err := pvegate.New(pvegate.Config{QM: qm, Runner: r, FS: fstest.MapFS{}, Lock: freeLock{}, After: now})
		if err != nil {
			t.Fatal(err)
		}
		var o, e bytes.Buffer
		code := g.Run(context.Background(), pvegate.Request{Command: in}, &o, &e)
		if _, perr := verbs.Parse(in); perr != nil {
			if code != pvegate.ExitRefused || len(r.argvs()) != 0 || o.Len() != 0 {
				t.Fatalf("%q: exit %d, ran %q, stdout %q", in, code, r.argvs(), o.String())
			}
			if strings.Count(e.String(), "\n") != 1 || len(e.String()) > 300 {
				t.Fatalf("%q: refusal is not one short line: %q", in, e.String())
			}
			return
		}
		if code == pvegate.ExitRefused || len(r.argvs()) == 0 {
			t.Fatalf("verb %q: exit %d, ran %q", in, code, r.argvs())
		}
	})
}
