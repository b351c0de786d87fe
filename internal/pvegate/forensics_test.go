package pvegate_test

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
)

// qemuFS is a host with VM 102's QEMU process (pid 4242): one vCPU thread
// stuck in D, one running, and pressure files.
func qemuFS() fstest.MapFS {
	return fstest.MapFS{
		"var/run/qemu-server/102.pid":     {Data: []byte("4242\n")},
		"proc/4242/status":                {Data: []byte("Name:\tkvm\nState:\tS (sleeping)\nThreads:\t2\n")},
		"proc/4242/wchan":                 {Data: []byte("do_sys_poll")},
		"proc/4242/task/4242/stat":        {Data: []byte("4242 (kvm) S 1 4242 4242 0 -1")},
		"proc/4242/task/4243/stat":        {Data: []byte("4243 (CPU 0/KVM) D 1 4242 4242 0 -1")},
		"proc/4242/task/4243/wchan":       {Data: []byte("io_schedule")},
		"proc/4242/task/4244/stat":        {Data: []byte("4244 (worker (x) y) R 1 4242 4242 0 -1")},
		"proc/4242/task/not-a-thread/bad": {Data: []byte("x")},
		"proc/pressure/cpu":               {Data: []byte("some avg10=1.00 avg60=0.50 avg300=0.10 total=1\n")},
		"proc/pressure/memory":            {Data: []byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")},
		"proc/pressure/io":                {Data: []byte("some avg10=9.00 avg60=9.00 avg300=9.00 total=9\n")},
	}
}

var headings = []string{
	"== qm status 102 --verbose ==",
	"== qm config 102 ==",
	"== qemu process ==",
	"== qm monitor 102: info status ==",
	"== qm monitor 102: info cpus ==",
	"== qm monitor 102: info block ==",
	"== free -m ==",
	"== pressure ==",
	"== pvesm status ==",
	"== kernel: oom and hung tasks ==",
}

// assertInOrder checks every heading appears once, in order.
func assertInOrder(t *testing.T, out string) {
	t.Helper()
	at := 0
	for _, h := range headings {
		assert.Equal(t, 1, strings.Count(out, h), "heading %q once", h)
		i := strings.Index(out[at:], h)
		if assert.GreaterOrEqual(t, i, 0, "heading %q after the previous one", h) {
			at += i
		}
	}
}

func TestForensicsSections(t *testing.T) {
	f := newFakeRunner(qm)
	g := newGate(t, f, func(c *pvegate.Config) { c.FS = qemuFS() })
	code, out, _ := run(g, "forensics")
	require.Equal(t, pvegate.ExitOK, code)
	assertInOrder(t, out)

	assert.Contains(t, out, "status: running")
	assert.Contains(t, out, "lock: backup\n!! the VM is locked (backup)")
	assert.Contains(t, out, "pid 4242 (from /var/run/qemu-server/102.pid)")
	assert.Contains(t, out, "wchan: do_sys_poll")
	assert.Contains(t, out, "threads: 3, in D (uninterruptible): 1")
	assert.Regexp(t, `tid 4243 +CPU 0/KVM +state D wchan io_schedule +!! stuck in D`, out)
	assert.Regexp(t, `tid 4244 +worker \(x\) y +state R`, out)
	assert.Contains(t, out, "io:    some avg10=9.00")
	assert.Contains(t, out, "Out of memory: Killed process 4242")
	assert.Contains(t, out, "blocked for more than 120 seconds")
	assert.NotContains(t, out, "eth0 up", "kernel lines are filtered to OOM and hung tasks")

	assert.Equal(t, []string{
		"qm status 102 --verbose", "qm config 102",
		"qm monitor 102", "qm monitor 102", "qm monitor 102",
		"free -m", "pvesm status", "dmesg -T",
	}, f.argvs(), "forensics is read-only: no other command runs")
	var stdins []string
	for _, c := range f.rawCalls() {
		if c.stdin != "" {
			stdins = append(stdins, c.stdin)
		}
	}
	assert.Equal(t, []string{"info status\nquit\n", "info cpus\nquit\n", "info block\nquit\n"}, stdins,
		"the monitor gets fixed strings only")
}

func TestForensicsContinuesPastFailingAndHangingSections(t *testing.T) {
	f := newFakeRunner(qm)
	f.fail["qm status 102 --verbose"] = pvegate.Result{Output: []byte("unable to connect to VM 102 qmp socket\n"), ExitCode: 255}
	f.hang["qm config 102"] = true   // wedged, but honours its deadline
	f.stuck["qm monitor 102"] = true // stuck where no deadline reaches
	f.fail["pvesm status"] = pvegate.Result{Output: []byte("storage 'nfs' is not online\n"), ExitCode: 2}
	t.Cleanup(func() { close(f.release) }) // lets the abandoned monitor sections end

	g := newGate(t, f, func(c *pvegate.Config) { c.SectionTimeout = 50 * time.Millisecond })
	code, out, _ := run(g, "forensics")
	require.Equal(t, pvegate.ExitOK, code)
	assertInOrder(t, out)

	assert.Contains(t, out, "unable to connect to VM 102 qmp socket\n(section failed: /usr/sbin/qm exited 255)")
	assert.Contains(t, out, "== qm config 102 ==\n(section failed: /usr/sbin/qm: killed after 50ms)")
	assert.Contains(t, out, "== qm monitor 102: info status ==\n(no answer within 50ms; moving on)")
	assert.Contains(t, out, "== qemu process ==\n(section failed: read /var/run/qemu-server/102.pid")
	assert.Contains(t, out, "storage 'nfs' is not online\n(section failed: pvesm exited 2)")
	assert.Contains(t, out, "(section failed: no /proc/pressure/{cpu,memory,io}")
	// The sections after the failures still ran.
	assert.Contains(t, out, "Mem: 64000 1000 63000")
	assert.Contains(t, out, "Out of memory: Killed process 4242")
}

func TestForensicsMarksBadPidFile(t *testing.T) {
	f := newFakeRunner(qm)
	fsys := fstest.MapFS{"var/run/qemu-server/102.pid": {Data: []byte("../../etc/shadow")}}
	g := newGate(t, f, func(c *pvegate.Config) { c.FS = fsys })
	_, out, _ := run(g, "forensics")
	assert.Contains(t, out, `holds no pid: "../../etc/shadow"`)
}

func TestForensicsFilterKeepsErrors(t *testing.T) {
	f := newFakeRunner(qm)
	f.fail["dmesg -T"] = pvegate.Result{Output: []byte("dmesg: read kernel buffer failed: Operation not permitted\n"), ExitCode: 1}
	_, out, _ := run(newGate(t, f, nil), "forensics")
	assert.Contains(t, out, "Operation not permitted\n(section failed: dmesg exited 1)")
	assert.NotContains(t, out, "no OOM or hung-task messages", "an error must not read as an all-clear")
}

func TestForensicsOutputBounded(t *testing.T) {
	f := newFakeRunner(qm)
	f.fail["free -m"] = pvegate.Result{Output: []byte(strings.Repeat("x", 1<<20))}
	_, out, _ := run(newGate(t, f, nil), "forensics")
	assert.Contains(t, out, "[section cut at 65536 bytes]")
	assert.Less(t, len(out), pvegate.ForensicsMaxOutput+1024)
	assert.Contains(t, out, "== kernel: oom and hung tasks ==", "later sections survive a huge one")
}
