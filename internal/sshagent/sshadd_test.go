package sshagent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// sshAdd runs the real ssh-add against the agent socket and returns its
// combined output and exit error. askpass answers passphrase prompts.
func sshAdd(t *testing.T, sock, askpass string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sshTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookTool(t, "ssh-add"), args...)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C",
		"SSH_AUTH_SOCK=" + sock, "SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force",
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "ssh-add did not finish: %s", out)
	return string(out), err
}

func TestSSHAddListsOnlyTheDevvmKeyAndCannotChangeIt(t *testing.T) {
	devvmPath, devvmPub, devvmKey := writeKeyFile(t)
	pvePath, pvePub, _ := writeKeyFile(t)
	require.NoError(t, os.WriteFile(devvmPath+".pub", ssh.MarshalAuthorizedKey(devvmPub), 0o600))
	a := startAgent(t, Config{Key: devvmKey, DevvmHostKeys: []ssh.PublicKey{newSigner(t).PublicKey()}, User: testUser})
	askpass := filepath.Join(t.TempDir(), "askpass")
	require.NoError(t, os.WriteFile(askpass, []byte("#!/bin/sh\necho lock-passphrase\n"), 0o700))

	list := func() string {
		t.Helper()
		out, err := sshAdd(t, a.sock, askpass, "-l")
		require.NoError(t, err, "ssh-add -l: %s", out)
		return out
	}
	out := list()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 1, "exactly one key listed: %q", out)
	assert.Contains(t, lines[0], ssh.FingerprintSHA256(devvmPub))
	assert.NotContains(t, out, ssh.FingerprintSHA256(pvePub))

	refusals := []struct {
		name    string
		args    []string
		request string
	}{
		{"add-pve-key", []string{pvePath}, "add"},
		{"add-constrained", []string{"-t", "60", pvePath}, "add"},
		{"remove", []string{"-d", devvmPath}, "remove"},
		{"remove-all", []string{"-D"}, "remove_all"},
		{"lock", []string{"-x"}, "lock"},
		{"unlock", []string{"-X"}, "unlock"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := len(a.logs.Where(t, "event", "refused"))
			out, err := sshAdd(t, a.sock, askpass, tc.args...)
			require.Error(t, err, "ssh-add %v must fail: %s", tc.args, out)
			var got []string
			for _, m := range a.logs.Where(t, "event", "refused")[before:] {
				got = append(got, m["request"].(string))
			}
			assert.Contains(t, got, tc.request)
			after := list()
			assert.Contains(t, after, ssh.FingerprintSHA256(devvmPub), "the devvm key is still listed")
			assert.NotContains(t, after, ssh.FingerprintSHA256(pvePub), "the PVE key is never listed")
		})
	}
}
