package devstack

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/testing/testbin"
)

// TestStartBlackholedHostDevvmDown: the options reach the binaries: with
// the Proxmox host blackholed a verb ends in its timeout (a 504 with its
// code), and the stack still serves the page.
func TestStartBlackholedHostDevvmDown(t *testing.T) {
	t.Cleanup(testbin.Cleanup)
	bin := testbin.Build(t, "breakglass/cmd/web", "breakglass/cmd/keyholder")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{
		Listen:       "127.0.0.1:0",
		BinDir:       bin,
		Environ:      []string{"PATH=" + os.Getenv("PATH")},
		Presence:     "off",
		PVE:          PVEBlackholed,
		DevvmDown:    true,
		APIBaseURL:   "http://127.0.0.1:9",
		KeyholderEnv: []string{"BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=2"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	assert.Nil(t, s.pve, "no simulated host")
	assert.Nil(t, s.devvm, "no devvm")

	resp, err := http.Get(s.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, s.URL+"api/vm/status", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", s.Origin)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body wire.ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, body.Error)
	assert.Equal(t, wire.CodeTimeout, body.Code)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]Config{
		"not-loopback": {Listen: "0.0.0.0:0"},
		"unknown-pve":  {Listen: "127.0.0.1:0", PVE: "real"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Start(t.Context(), cfg)
			assert.Error(t, err)
		})
	}
}
