package logtest

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
)

func TestWaitForWakesOnTheWrite(t *testing.T) {
	var b Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &b, JSONFormat: true})
	log.Info("first", "event", "bind")
	go log.Info("audit", "event", "sign", "outcome", "signed")
	got := b.WaitFor(t, "event", "sign", 10*time.Second)
	assert.Len(t, got, 1)
	assert.Equal(t, "signed", got[0]["outcome"])
	assert.Len(t, b.Where(t, "@message", "first"), 1)
	assert.Len(t, b.Lines(t), 2)
}
