package main

import (
	"os"
	"path/filepath"
	"testing"

	"breakglass/internal/devstack"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// buildWeb is the web binary, built once for this test binary.
func buildWeb(t testing.TB) string {
	t.Helper()
	return filepath.Join(testbin.Build(t, "breakglass/cmd/web"), "web")
}

// newStack is internal/testing/stacktest's stack with both hosts down: the
// tests here run the web alone (a keyholder stand-in where one is needed).
func newStack(t testing.TB, script ...apidouble.Turn) *stacktest.Stack {
	t.Helper()
	return stacktest.New(t, stacktest.Options{Script: script, PVE: devstack.PVEDown, DevvmDown: true})
}

// ev and stream are the SSE client of internal/testing/webtest.
type (
	ev     = webtest.Event
	stream = webtest.Stream
)

// shape is the event types with status events removed and runs of the same
// type folded into one.
func shape(es []ev) []string {
	var out []string
	for _, e := range es {
		if e.Type == "status" {
			continue
		}
		if len(out) > 0 && out[len(out)-1] == e.Type {
			continue
		}
		out = append(out, e.Type)
	}
	return out
}
