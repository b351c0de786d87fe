package pvesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"breakglass/internal/pvegate"
)

// The simulated VM's recovery ladder: a screen, a serial console, a guest
// agent, a task list.

// Screen size of the simulated VM's display.
const (
	ScreenWidth  = 1024
	ScreenHeight = 768
)

// Task is one Proxmox task of the simulated host, as /cluster/tasks lists it.
type Task struct {
	UPID      string `json:"upid"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status,omitempty"`
	User      string `json:"user"`
	Node      string `json:"node"`
	StartTime int64  `json:"starttime"`
	EndTime   int64  `json:"endtime,omitempty"`
}

// bootLog is the screen and serial console of a VM that booted.
var bootLog = []string{
	"[    0.000000] Linux version 6.12.57+deb13-amd64 (debian-kernel@lists.debian.org)",
	"[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro console=tty0 console=ttyS0,115200",
	"[    1.204511] EXT4-fs (sda1): mounted filesystem with ordered data mode.",
	"[  OK  ] Started systemd-journald.service - Journal Service.",
	"[  OK  ] Reached target network-online.target - Network is Online.",
	"[  OK  ] Started qemu-guest-agent.service - QEMU Guest Agent.",
	"[  OK  ] Started ssh.service - OpenBSD Secure Shell server.",
	"",
	"Debian GNU/Linux 13 devvm ttyS0",
	"",
	"devvm login: ",
}

// sshdDeadLog is what the console shows when sshd died (a full disk).
var sshdDeadLog = []string{
	"[ 8812.411203] EXT4-fs warning (device sda1): ext4_dx_add_entry: Directory index full!",
	"[FAILED] Failed to start ssh.service - OpenBSD Secure Shell server.",
	"See 'systemctl status ssh.service' for details.",
	"",
	"devvm login: ",
}

// panicLog is the screen and serial console of a guest whose kernel panicked.
var panicLog = []string{
	"[ 8812.411203] BUG: kernel NULL pointer dereference, address: 0000000000000008",
	"[ 8812.411290] #PF: supervisor read access in kernel mode",
	"[ 8812.411377] Oops: 0000 [#1] PREEMPT SMP NOPTI",
	"[ 8812.411455] CPU: 2 PID: 1337 Comm: kworker/2:1 Not tainted 6.12.57+deb13-amd64",
	"[ 8812.411602] RIP: 0010:ext4_mb_regular_allocator+0x1a4/0xc60 [ext4]",
	"[ 8812.412881] Kernel panic - not syncing: Fatal exception",
	"[ 8812.413002] Kernel Offset: 0x1c000000 from 0xffffffff81000000",
	"[ 8812.413110] ---[ end Kernel panic - not syncing: Fatal exception ]---",
}

// SetPanicked makes the guest's kernel panic (true) or clears it (a reset or
// a stop clears it too). A panicked VM still says running to qm, its guest
// agent and its sshd are dead, and its screen and console show the panic.
func (v *VM) SetPanicked(p bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.panicked = p
}

// SetGuestAgent kills (false) or revives (true) the guest agent.
func (v *VM) SetGuestAgent(alive bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.agentDead = !alive
}

// SetSSHD kills (false) or revives (true) the guest's sshd; the guest agent
// lives on. guest-exec `systemctl restart ssh` revives it too.
func (v *VM) SetSSHD(up bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sshdDead = !up
}

// SSHUp reports whether the guest's sshd would answer: the VM runs, has not
// panicked, and sshd is alive. The devvm double asks it for each connection.
func (v *VM) SSHUp() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == Running && !v.panicked && !v.sshdDead
}

// GuestExecs returns the argv of every guest-exec the VM ran, in order.
func (v *VM) GuestExecs() [][]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([][]string, len(v.execs))
	for i, e := range v.execs {
		out[i] = append([]string(nil), e...)
	}
	return out
}

// Screen returns the text on the VM's screen now ("" when stopped).
func (v *VM) Screen() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.screenLocked(), "\n")
}

func (v *VM) screenLocked() []string {
	switch {
	case v.state != Running:
		return nil
	case v.panicked:
		return append(append([]string(nil), bootLog[:3]...), panicLog...)
	case v.sshdDead:
		return append(append([]string(nil), bootLog[:len(bootLog)-2]...), sshdDeadLog...)
	}
	return bootLog
}

// serialText is what a client of the serial socket reads on connecting.
func (v *VM) serialText() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	lines := v.screenLocked()
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return strings.Join(lines, "\r\n")
}

// addTaskLocked records a task of this VM, as Proxmox does for qm actions.
func (v *VM) addTaskLocked(typ, status string) {
	now := time.Now().Unix()
	n := len(v.tasks)
	v.tasks = append(v.tasks, Task{
		UPID: fmt.Sprintf("UPID:pve:%08X:%08X:%08X:%s:%d:root@pam:", 100000+n, 200000+n, now, typ, v.vmid),
		ID:   strconv.Itoa(v.vmid), Type: typ, Status: status, User: "root@pam", Node: "pve",
		StartTime: now, EndTime: now,
	})
}

// seedTasks is the simulated host's history: a nightly backup of this VM
// and a task of another VM, which tasks must leave out.
func seedTasks(vmid int) []Task {
	day := time.Now().Add(-24 * time.Hour).Truncate(time.Hour).Unix()
	id := strconv.Itoa(vmid)
	return []Task{
		{UPID: "UPID:pve:0001:0001:0001:vzdump:" + id + ":root@pam:", ID: id, Type: "vzdump", Status: "OK", User: "root@pam", Node: "pve", StartTime: day, EndTime: day + 420},
		{UPID: "UPID:pve:0002:0002:0002:qmstart:900:root@pam:", ID: "900", Type: "qmstart", Status: "OK", User: "root@pam", Node: "pve", StartTime: day + 600, EndTime: day + 602},
	}
}

// guestLocked answers `qm guest cmd <vmid> <cmd>` and `qm guest exec <vmid>
// --timeout 60 -- argv…` as qm does, closely enough.
func (v *VM) guestLocked(args []string) pvegate.Result {
	if len(args) < 4 {
		return result(255, "400 not enough arguments\n")
	}
	if args[2] != strconv.Itoa(v.vmid) {
		return result(2, "Configuration file 'nodes/pve/qemu-server/%s.conf' does not exist\n", args[2])
	}
	if v.state != Running {
		return result(255, "VM %d is not running\n", v.vmid)
	}
	if v.agentDead || v.panicked {
		return result(255, "QEMU guest agent is not running\n")
	}
	switch {
	case args[1] == "cmd" && len(args) == 4:
		switch args[3] {
		case "ping":
			return result(0, "")
		case "get-osinfo":
			return result(0, `{"id":"debian","kernel-release":"6.12.57+deb13-amd64","machine":"x86_64","name":"Debian GNU/Linux","pretty-name":"Debian GNU/Linux 13 (trixie)","version-id":"13"}`+"\n")
		case "get-fsinfo":
			used := int64(21474836480)
			if v.sshdDead {
				used = 67108864000 // the disk that filled up
			}
			return result(0, `[{"mountpoint":"/","name":"sda1","type":"ext4","total-bytes":67444416512,"used-bytes":%d},{"mountpoint":"/boot/efi","name":"sda15","type":"vfat","total-bytes":129718272,"used-bytes":6342656}]`+"\n", used)
		case "network-get-interfaces":
			return result(0, `[{"name":"lo","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8}]},{"name":"eth0","hardware-address":"bc:24:11:00:01:02","ip-addresses":[{"ip-address":"10.0.10.10","ip-address-type":"ipv4","prefix":24}]}]`+"\n")
		}
		return result(255, "400 Parameter verification failed.\ncommand: value '%s' does not have a value in the enumeration\n", args[3])
	case args[1] == "exec" && len(args) >= 7 && args[3] == "--timeout" && args[5] == "--":
		argv := append([]string(nil), args[6:]...)
		v.execs = append(v.execs, argv)
		out := "simulated guest ran " + strconv.Quote(strings.Join(argv, " ")) + "\n"
		if len(argv) == 3 && argv[0] == "systemctl" && argv[1] == "restart" && (argv[2] == "ssh" || argv[2] == "sshd") {
			v.sshdDead = false
			out = ""
		}
		b, _ := json.Marshal(map[string]any{"exitcode": 0, "exited": 1, "out-data": out})
		return result(0, "%s\n", b)
	}
	return result(255, "400 unknown command 'qm %s'\n", strings.Join(args, " "))
}

// BootScreen and PanicScreen are the simulated screen's two texts, for
// RenderPPM.
var (
	BootScreen  = append([]string(nil), bootLog...)
	PanicScreen = append(append([]string(nil), bootLog[:3]...), panicLog...)
)

// RenderPPM draws lines of text as the simulated VM's screen does: a
// ScreenWidth×ScreenHeight P6 PPM, light grey on black like a VGA console.
func RenderPPM(lines []string) []byte { return renderPPM(lines) }

// screendumpLocked writes the screen as a P6 PPM to file, as QEMU's
// screendump does.
func (v *VM) screendumpLocked(file string) string {
	if err := os.WriteFile(file, renderPPM(v.screenLocked()), 0o600); err != nil {
		return "screendump: " + err.Error() + "\n"
	}
	return ""
}

// renderPPM draws lines of text, light grey on black as a VGA console, into
// a ScreenWidth×ScreenHeight P6 PPM.
func renderPPM(lines []string) []byte {
	img := image.NewRGBA(image.Rect(0, 0, ScreenWidth, ScreenHeight))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.Black), image.Point{}, draw.Src)
	face := basicfont.Face7x13
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.RGBA{0xaa, 0xaa, 0xaa, 0xff}), Face: face}
	for i, line := range lines {
		d.Dot = fixed.P(4, 16+i*face.Height)
		d.DrawString(line)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "P6\n%d %d\n255\n", ScreenWidth, ScreenHeight)
	b.Grow(3 * ScreenWidth * ScreenHeight)
	for i := 0; i < len(img.Pix); i += 4 {
		b.Write(img.Pix[i : i+3])
	}
	return b.Bytes()
}

// tasksJSON answers `pvesh get /cluster/tasks --output-format json`.
func (v *VM) tasksJSON() pvegate.Result {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, _ := json.Marshal(v.tasks)
	return pvegate.Result{Output: append(b, '\n')}
}
