package keyholder_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
)

// validConfig returns a config that New accepts, with its files in dir.
func validConfig(t *testing.T, dir string) keyholder.Config {
	t.Helper()
	pvePath, _, devvmPath := newKeys(t, dir)
	kh := filepath.Join(dir, "known_hosts")
	lines := knownhosts.Line([]string{knownhosts.Normalize("192.0.2.10:22")}, newSigner(t).PublicKey()) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize("192.0.2.20:2222")}, newSigner(t).PublicKey()) + "\n"
	require.NoError(t, os.WriteFile(kh, []byte(lines), 0o644))
	return keyholder.Config{
		PVE:            keyholder.Host{Host: "192.0.2.10", User: "root"},
		PVEKeyPath:     pvePath,
		DevVM:          keyholder.Host{Host: "192.0.2.20", Port: 2222, User: "breakglass"},
		DevVMKeyPath:   devvmPath,
		KnownHostsPath: kh,
		RPID:           passkeyRPID,
		Origins:        []string{passkeyOrigin},
		OperatorsPath:  writeOperators(t, dir, passkey.New(passkeyRPID, passkeyOrigin).Line("alice")),
	}
}

func TestNewAcceptsValidConfig(t *testing.T) {
	k, err := keyholder.New(validConfig(t, t.TempDir()))
	require.NoError(t, err)
	defer k.Close()
	assert.Equal(t, 102, k.VMID())
	assert.NotNil(t, k.DevVMSigner())
}

func TestNewRefuses(t *testing.T) {
	cases := []struct {
		name     string
		edit     func(t *testing.T, c *keyholder.Config)
		want     error
		wantFile func(c keyholder.Config) string
	}{
		{name: "zero", edit: func(t *testing.T, c *keyholder.Config) { *c = keyholder.Config{} }, want: keyholder.ErrConfig},
		{name: "missing-pve-key", edit: func(t *testing.T, c *keyholder.Config) {
			c.PVEKeyPath = filepath.Join(filepath.Dir(c.PVEKeyPath), "nope")
		}, want: fs.ErrNotExist, wantFile: func(c keyholder.Config) string { return c.PVEKeyPath }},
		{name: "missing-devvm-key", edit: func(t *testing.T, c *keyholder.Config) {
			c.DevVMKeyPath = filepath.Join(filepath.Dir(c.DevVMKeyPath), "nope")
		}, want: fs.ErrNotExist, wantFile: func(c keyholder.Config) string { return c.DevVMKeyPath }},
		{name: "pve-key-0644", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.Chmod(c.PVEKeyPath, 0o644))
		}, want: keyholder.ErrKeyPermissions, wantFile: func(c keyholder.Config) string { return c.PVEKeyPath }},
		{name: "pve-key-0640", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.Chmod(c.PVEKeyPath, 0o640))
		}, want: keyholder.ErrKeyPermissions, wantFile: func(c keyholder.Config) string { return c.PVEKeyPath }},
		{name: "devvm-key-0604", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.Chmod(c.DevVMKeyPath, 0o604))
		}, want: keyholder.ErrKeyPermissions, wantFile: func(c keyholder.Config) string { return c.DevVMKeyPath }},
		{name: "key-is-dir", edit: func(t *testing.T, c *keyholder.Config) {
			c.PVEKeyPath = t.TempDir()
			require.NoError(t, os.Chmod(c.PVEKeyPath, 0o700))
		}, want: keyholder.ErrKeyPermissions},
		{name: "key-not-a-key", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.WriteFile(c.PVEKeyPath, []byte("not a key\n"), 0o600))
		}, want: keyholder.ErrBadKey, wantFile: func(c keyholder.Config) string { return c.PVEKeyPath }},
		{name: "no-pve-entry", edit: func(t *testing.T, c *keyholder.Config) {
			c.PVE.Port = 2200 // known_hosts pins port 22 only
		}, want: keyholder.ErrNoKnownHost, wantFile: func(c keyholder.Config) string { return c.KnownHostsPath }},
		{name: "no-devvm-entry", edit: func(t *testing.T, c *keyholder.Config) {
			c.DevVM.Host = "192.0.2.21"
		}, want: keyholder.ErrNoKnownHost, wantFile: func(c keyholder.Config) string { return c.KnownHostsPath }},
		{name: "missing-known-hosts", edit: func(t *testing.T, c *keyholder.Config) {
			c.KnownHostsPath += ".nope"
		}, want: fs.ErrNotExist, wantFile: func(c keyholder.Config) string { return c.KnownHostsPath }},
		{name: "known-hosts-0666", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.Chmod(c.KnownHostsPath, 0o666))
		}, want: keyholder.ErrKnownHostsWritable, wantFile: func(c keyholder.Config) string { return c.KnownHostsPath }},
		{name: "host-name", edit: func(t *testing.T, c *keyholder.Config) { c.PVE.Host = "pve.lan" }, want: keyholder.ErrHostNotIP},
		{name: "no-user", edit: func(t *testing.T, c *keyholder.Config) { c.PVE.User = "" }, want: keyholder.ErrConfig},
		{name: "bad-port", edit: func(t *testing.T, c *keyholder.Config) { c.DevVM.Port = 70000 }, want: keyholder.ErrConfig},
		{name: "bad-vmid", edit: func(t *testing.T, c *keyholder.Config) { c.VMID = 7 }, want: keyholder.ErrConfig},
		{name: "negative-timeout", edit: func(t *testing.T, c *keyholder.Config) { c.VerbTimeout = -1 }, want: keyholder.ErrConfig},
		{name: "presence-typo", edit: func(t *testing.T, c *keyholder.Config) { c.Presence = "of" }, want: keyholder.ErrConfig},
		{name: "no-operators-path", edit: func(t *testing.T, c *keyholder.Config) { c.OperatorsPath = "" }, want: keyholder.ErrConfig},
		{name: "missing-operators", edit: func(t *testing.T, c *keyholder.Config) {
			c.OperatorsPath += ".nope"
		}, want: fs.ErrNotExist, wantFile: func(c keyholder.Config) string { return c.OperatorsPath }},
		{name: "empty-operators", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.WriteFile(c.OperatorsPath, []byte("# nobody yet\n"), 0o644))
		}, want: keyholder.ErrNoOperators, wantFile: func(c keyholder.Config) string { return c.OperatorsPath }},
		{name: "malformed-operators", edit: func(t *testing.T, c *keyholder.Config) {
			require.NoError(t, os.WriteFile(c.OperatorsPath, []byte("alice AAAA\n"), 0o644))
		}, want: presence.ErrOperators, wantFile: func(c keyholder.Config) string { return c.OperatorsPath }},
		{name: "rp-id-ip", edit: func(t *testing.T, c *keyholder.Config) { c.RPID = "10.0.10.1" }, want: presence.ErrConfig},
		{name: "no-origins", edit: func(t *testing.T, c *keyholder.Config) { c.Origins = nil }, want: presence.ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t, t.TempDir())
			c.edit(t, &cfg)
			_, err := keyholder.New(cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, c.want)
			if c.wantFile != nil {
				assert.Contains(t, err.Error(), c.wantFile(cfg), "the message names the file")
			}
		})
	}
}

// With enrollment open, a missing or empty operators file is how an
// install starts; with presence off, nothing about passkeys is read.
func TestNewPresenceStarts(t *testing.T) {
	cfg := validConfig(t, t.TempDir())
	cfg.OperatorsPath += ".absent"
	cfg.Enroll = true
	k, err := keyholder.New(cfg)
	require.NoError(t, err)
	assert.Equal(t, presence.ModeRequired, k.PresenceMode())
	k.Close()

	cfg = validConfig(t, t.TempDir())
	cfg.Presence, cfg.OperatorsPath, cfg.RPID, cfg.Origins = presence.ModeOff, "", "", nil
	k, err = keyholder.New(cfg)
	require.NoError(t, err)
	assert.Equal(t, presence.ModeOff, k.PresenceMode())
	k.Close()
}

func TestKeyModeNarrowerThan0600Accepted(t *testing.T) {
	cfg := validConfig(t, t.TempDir())
	require.NoError(t, os.Chmod(cfg.PVEKeyPath, 0o400))
	k, err := keyholder.New(cfg)
	require.NoError(t, err)
	k.Close()
}
