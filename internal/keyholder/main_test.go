package keyholder_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"breakglass/internal/testing/testbin"
)

// TestMain checks that no test leaves a goroutine behind: every SSH
// connection, verb and server the keyholder starts has an owner that ends it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testbin.Cleanup()
		os.Exit(code)
	}))
}
