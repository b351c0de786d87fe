package sshagent

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// connection and server the agent starts has an owner that ends it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
