package keyholder_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every SSH
// connection, verb and server the keyholder starts has an owner that ends it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
