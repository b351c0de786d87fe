package pvegate_test

// One test per security property of pve-gate, each named for the attack it
// blocks. The end-to-end versions through a stock sshd are in ssh_test.go.

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"breakglass/internal/pvegate"
	"breakglass/internal/verbs"
)

func TestHardeningShellInjectionNeverReachesQM(t *testing.T) {
	for _, in := range []string{"status;reboot", "status && qm destroy 102", "status|sh", "$(reboot)",
		"`reboot`", "status\nreboot", "reset;qm destroy 102"} {
		f := newFakeRunner(qm)
		code, _, _ := run(newGate(t, f, nil), in)
		assert.Equal(t, pvegate.ExitRefused, code, "%q", in)
		assert.Empty(t, f.argvs(), "%q", in)
	}
}

func TestHardeningOtherVMUnreachable(t *testing.T) {
	// Attack: a stolen PVE key aimed at another VM on the host.
	for _, in := range []string{"reset 103", "stop 100", "qm stop 103", "status --vmid 103"} {
		f := newFakeRunner(qm)
		code, _, _ := run(newGate(t, f, nil), in)
		assert.Equal(t, pvegate.ExitRefused, code, "%q", in)
		assert.Empty(t, f.argvs())
	}
}

func TestHardeningNoSkiplockOrExtraOptions(t *testing.T) {
	// Attack: forcing a locked VM (backup, migration) by --skiplock, or any
	// other qm option smuggled in. Every argv every verb runs is checked.
	for _, v := range verbs.All() {
		f := newFakeRunner(qm)
		run(newGate(t, f, func(c *pvegate.Config) { c.FS = qemuFS() }), string(v.Name))
		for _, c := range f.rawCalls() {
			for _, a := range c.argv[1:] {
				if strings.HasPrefix(a, "-") {
					assert.Contains(t, []string{"--verbose", "-m", "-T", "--output-format", "--timeout", "--"}, a, "%s ran %q", v.Name, c.argv)
				}
			}
			assert.NotContains(t, strings.Join(c.argv, " "), "skiplock")
		}
	}
}

func TestHardeningMonitorGetsFixedStringsOnly(t *testing.T) {
	// Attack: QEMU monitor commands (quit, system_reset, migrate) typed by
	// a caller. The monitor only ever receives the fixed info commands.
	f := newFakeRunner(qm)
	run(newGate(t, f, nil), "forensics")
	for _, c := range f.rawCalls() {
		if c.stdin == "" {
			continue
		}
		cmd, _, _ := strings.Cut(c.stdin, "\n")
		assert.Contains(t, pvegate.MonitorCommands, cmd)
		assert.Equal(t, cmd+"\nquit\n", c.stdin)
	}
}

func TestHardeningConcurrentMutationsSerialised(t *testing.T) {
	// Attack: two keys racing reset against cycle. Covered by
	// TestLockContention; here the lock is a real flock across two opens.
	lock := pvegate.FileLock{Path: t.TempDir() + "/lock"}
	unlock, err := lock.TryLock()
	assert.NoError(t, err)
	_, err = lock.TryLock()
	assert.ErrorIs(t, err, pvegate.ErrBusy)
	unlock()
	unlock2, err := lock.TryLock()
	assert.NoError(t, err)
	unlock2()
}

func TestHardeningLockFileSymlinkRefused(t *testing.T) {
	// Attack: a planted symlink at the lock path making root create or
	// truncate another file.
	dir := t.TempDir()
	target := dir + "/target"
	link := dir + "/lock"
	assert.NoError(t, symlink(target, link))
	_, err := pvegate.FileLock{Path: link}.TryLock()
	assert.Error(t, err)
	assert.NoFileExists(t, target)
}
