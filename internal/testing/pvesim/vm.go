package pvesim

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing/fstest"

	"breakglass/internal/pvegate"
)

// QM is the qm path the simulated host's gate runs; VM.Calls shows it as "qm".
const QM = pvegate.DefaultQM

// VM states as qm status prints them.
const (
	Running = "running"
	Stopped = "stopped"
)

// qemuPID is the simulated QEMU process id while the VM runs.
const qemuPID = 4242

// VM is a simulated Proxmox VM. It is the gate's pvegate.Runner (qm and the
// host commands of forensics) and its fs.FS (pid file, /proc). It is safe for
// concurrent use.
type VM struct {
	vmid int

	// mu protects the following.
	mu      sync.Mutex
	state   string
	calls   [][]string
	block   chan struct{} // non-nil while Block holds commands
	extra   int
	lock    string
	waiting chan []string
	// The recovery ladder (ladder.go).
	panicked  bool
	agentDead bool
	sshdDead  bool
	tasks     []Task
	execs     [][]string
}

var (
	_ pvegate.Runner = (*VM)(nil)
	_ fs.FS          = (*VM)(nil)
)

// NewVM returns a running VM with the given id.
func NewVM(vmid int) *VM {
	return &VM{vmid: vmid, state: Running, waiting: make(chan []string, 64), tasks: seedTasks(vmid)}
}

// VMID returns the VM's id.
func (v *VM) VMID() int { return v.vmid }

// State returns "running" or "stopped".
func (v *VM) State() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

// SetState sets the VM's state ("running" or "stopped").
func (v *VM) SetState(s string) {
	if s != Running && s != Stopped {
		panic("pvesim: SetState(" + strconv.Quote(s) + ")") // a programming error in a test
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
}

// Calls returns every qm command run so far, in order, each as
// {"qm", args...}. Forensics' host commands (free, pvesm, dmesg) are not
// listed.
func (v *VM) Calls() [][]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([][]string, len(v.calls))
	for i, c := range v.calls {
		out[i] = append([]string(nil), c...)
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (v *VM) ResetCalls() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = nil
}

// SetExtraOutput pads the output of every qm status with n more bytes (in
// lines of 63 'x' and a newline), to test output caps.
func (v *VM) SetExtraOutput(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.extra = n
}

// SetLock sets the VM's Proxmox lock ("backup", "migrate", …; "" clears
// it). Like Proxmox, a locked VM refuses reset, stop and start, and qm config
// shows a lock: line.
func (v *VM) SetLock(lock string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lock = lock
}

// Block holds every qm command from now on, as a wedged qm would: each waits
// until release is called or its context ends (the gate then reports a
// timeout). Each held command is announced on Waiting. release may be called
// more than once.
func (v *VM) Block() (release func()) {
	ch := make(chan struct{})
	v.mu.Lock()
	v.block = ch
	v.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			v.mu.Lock()
			if v.block == ch {
				v.block = nil
			}
			v.mu.Unlock()
			close(ch)
		})
	}
}

// Waiting receives the argv ({"qm", args...}) of each command held by Block
// as it starts waiting (up to 64 unread; more are not announced).
func (v *VM) Waiting() <-chan []string { return v.waiting }

// Run implements pvegate.Runner: it simulates qm and the host commands.
func (v *VM) Run(ctx context.Context, argv []string, stdin string) (pvegate.Result, error) {
	if len(argv) == 0 {
		return pvegate.Result{}, fmt.Errorf("run: empty argv")
	}
	if argv[0] == pvegate.DefaultPvesh {
		if strings.Join(argv[1:], " ") == "get /cluster/tasks --output-format json" {
			return v.tasksJSON(), nil
		}
		return result(255, "400 unknown call\n"), nil
	}
	if argv[0] != QM {
		return v.host(argv), nil
	}
	call := append([]string{"qm"}, argv[1:]...)
	v.mu.Lock()
	v.calls = append(v.calls, call)
	block := v.block
	v.mu.Unlock()
	if block != nil {
		select {
		case v.waiting <- call:
		default:
		}
		select {
		case <-block:
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return pvegate.Result{}, fmt.Errorf("qm: %w", pvegate.ErrTimeout)
			}
			return pvegate.Result{}, fmt.Errorf("qm: %w", ctx.Err())
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmLocked(argv[1:], stdin), nil
}

func result(code int, format string, a ...any) pvegate.Result {
	return pvegate.Result{Output: []byte(fmt.Sprintf(format, a...)), ExitCode: code}
}

// qmLocked answers one qm command as Proxmox's qm does, closely enough.
func (v *VM) qmLocked(args []string, stdin string) pvegate.Result {
	if len(args) < 2 {
		return result(255, "400 not enough arguments\n")
	}
	if args[0] == "guest" {
		return v.guestLocked(args)
	}
	if args[1] != strconv.Itoa(v.vmid) {
		return result(2, "Configuration file 'nodes/pve/qemu-server/%s.conf' does not exist\n", args[1])
	}
	running := v.state == Running
	notRunning := result(255, "VM %d not running\n", v.vmid)
	verb := strings.Join(args[:1], "") + "/" + strconv.Itoa(len(args))
	switch verb {
	case "reset/2", "stop/2", "start/2":
		if v.lock != "" {
			return result(255, "VM is locked (%s)\n", v.lock)
		}
	}
	switch verb {
	case "status/2":
		return v.padLocked(result(0, "status: %s\n", v.state))
	case "status/3":
		if args[2] != "--verbose" {
			break
		}
		// Like Proxmox's, the verbose status carries the lock when set.
		lock := ""
		if v.lock != "" {
			lock = "lock: " + v.lock + "\n"
		}
		if !running {
			return v.padLocked(result(0, "%sname: devvm\nqmpstatus: stopped\nstatus: stopped\nvmid: %d\n", lock, v.vmid))
		}
		return v.padLocked(result(0, "cpus: 4\n%smaxmem: 8589934592\nname: devvm\npid: %d\nqmpstatus: running\nstatus: running\nuptime: 86400\nvmid: %d\n", lock, qemuPID, v.vmid))
	case "config/2":
		lock := ""
		if v.lock != "" {
			lock = "lock: " + v.lock + "\n"
		}
		return result(0, "boot: order=scsi0\ncores: 4\n%smemory: 8192\nname: devvm\nscsi0: local-lvm:vm-%d-disk-0,size=64G\n", lock, v.vmid)
	case "monitor/3", "monitor/2":
		if !running {
			return notRunning
		}
		var b strings.Builder
		b.WriteString("Entering QEMU Monitor for VM " + strconv.Itoa(v.vmid) + " - type 'help' for help\n")
		for _, line := range strings.Split(stdin, "\n") {
			if line == "" || line == "quit" {
				break
			}
			if file, ok := strings.CutPrefix(line, "screendump "); ok {
				b.WriteString("qm> " + line + "\n" + v.screendumpLocked(file))
				continue
			}
			b.WriteString("qm> " + line + "\n" + monitorAnswer(line, v.vmid))
		}
		return result(0, "%s", b.String())
	case "reset/2":
		if !running {
			return notRunning
		}
		v.panicked = false
		v.addTaskLocked("qmreset", "OK")
		return result(0, "")
	case "stop/2":
		v.state = Stopped
		v.panicked = false
		v.addTaskLocked("qmstop", "OK")
		return result(0, "")
	case "start/2":
		if running {
			return result(255, "VM %d already running\n", v.vmid)
		}
		v.state = Running
		v.addTaskLocked("qmstart", "OK")
		return result(0, "")
	case "unlock/2":
		v.lock = ""
		return result(0, "")
	}
	return result(255, "400 unknown command 'qm %s'\n", strings.Join(args, " "))
}

func monitorAnswer(cmd string, vmid int) string {
	switch cmd {
	case "info status":
		return "VM status: running\n"
	case "info cpus":
		return "* CPU #0: thread_id=4243\n  CPU #1: thread_id=4244\n"
	case "info block":
		return fmt.Sprintf("drive-scsi0 (#block113): /dev/pve/vm-%d-disk-0 (raw)\n    Attached to:      scsi0\n", vmid)
	}
	return "unknown command: '" + cmd + "'\n"
}

// padLocked appends the extra output set by SetExtraOutput.
func (v *VM) padLocked(r pvegate.Result) pvegate.Result {
	if v.extra <= 0 {
		return r
	}
	line := strings.Repeat("x", 63) + "\n"
	pad := strings.Repeat(line, v.extra/len(line)+1)[:v.extra]
	r.Output = append(r.Output, pad...)
	return r
}

// host answers forensics' host commands.
func (v *VM) host(argv []string) pvegate.Result {
	switch strings.Join(argv, " ") {
	case "free -m":
		return result(0, "               total        used        free      shared  buff/cache   available\nMem:           64000       12000       40000         100       12000       51000\nSwap:           8191           0        8191\n")
	case "pvesm status":
		return result(0, "Name             Type     Status           Total            Used       Available        %%\nlocal             dir     active        98497780        12345678        81080076   12.53%%\nlocal-lvm     lvmthin     active       832888832       123456789       709432043   14.82%%\n")
	case "dmesg -T":
		return result(0, "[Thu Nov 26 10:00:00 2026] Linux version 6.8.12-4-pve\n[Thu Nov 26 10:00:01 2026] vmbr0: port 2(tap102i0) entered forwarding state\n")
	}
	return result(127, "%s: command not found\n", argv[0])
}

// Open implements fs.FS: the pid file and /proc of the simulated QEMU
// process while the VM runs, and the host's pressure files.
func (v *VM) Open(name string) (fs.File, error) {
	v.mu.Lock()
	running := v.state == Running
	v.mu.Unlock()
	m := fstest.MapFS{
		"proc/pressure/cpu":    {Data: []byte("some avg10=0.50 avg60=0.40 avg300=0.30 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")},
		"proc/pressure/memory": {Data: []byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")},
		"proc/pressure/io":     {Data: []byte("some avg10=1.20 avg60=0.80 avg300=0.50 total=654321\nfull avg10=0.90 avg60=0.60 avg300=0.40 total=543210\n")},
	}
	if running {
		pid := strconv.Itoa(qemuPID)
		p := "proc/" + pid
		m["var/run/qemu-server/"+strconv.Itoa(v.vmid)+".pid"] = &fstest.MapFile{Data: []byte(pid + "\n")}
		m[p+"/status"] = &fstest.MapFile{Data: []byte("Name:\tkvm\nState:\tS (sleeping)\nPid:\t" + pid + "\nThreads:\t3\nVmRSS:\t8391234 kB\n")}
		m[p+"/wchan"] = &fstest.MapFile{Data: []byte("do_sys_poll")}
		for i, th := range []struct{ comm, state, wchan string }{
			{"kvm", "S", "do_sys_poll"},
			{"CPU 0/KVM", "S", "kvm_vcpu_block"},
			{"CPU 1/KVM", "R", "0"},
		} {
			tid := strconv.Itoa(qemuPID + i)
			m[p+"/task/"+tid+"/stat"] = &fstest.MapFile{Data: []byte(tid + " (" + th.comm + ") " + th.state + " 1 " + pid + " " + pid + " 0 -1")}
			m[p+"/task/"+tid+"/wchan"] = &fstest.MapFile{Data: []byte(th.wchan)}
		}
	}
	return m.Open(name)
}
