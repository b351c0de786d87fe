// Command fakeqm stands in for Proxmox's qm in pve-gate's end-to-end tests.
// It finds its files next to its own executable (a forced command sees
// sshd's environment, not the test's): <exe>.calls gets one JSON line per
// call (argv, environment, stdin), <exe>.state holds the simulated VM's
// state (running unless it says stopped). When <exe>.hold exists, stop
// first opens the FIFO <exe>.entered for writing (so the test knows qm is
// running) and then waits for the FIFO <exe>.release to be closed.
//
// The recovery ladder: `monitor` given `screendump <file>` copies
// <exe>.frame (a PPM the test wrote) to <file>, then, when <exe>.hangdump
// exists, hangs until killed. `guest cmd 102 <cmd>` answers from
// <exe>.guest-<cmd> (exit 0) or, when <exe>.agentdead exists, says the
// agent is not running (exit 255); `guest exec 102 --timeout 60 -- argv…`
// prints the argv it got as JSON. A copy named pvesh answers
// `get /cluster/tasks --output-format json` with <exe>.tasks.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const vmid = "102"

type record struct {
	Argv  []string `json:"argv"`
	Env   []string `json:"env"`
	Stdin string   `json:"stdin,omitempty"`
}

func main() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeqm:", err)
		os.Exit(99)
	}
	args := os.Args[1:]
	rec := record{Argv: args, Env: os.Environ()}
	var stdin []string
	if len(args) > 0 && args[0] == "monitor" {
		sc := bufio.NewScanner(io.LimitReader(os.Stdin, 4096))
		for sc.Scan() {
			stdin = append(stdin, sc.Text())
		}
		rec.Stdin = strings.Join(stdin, "\n") + "\n"
	}
	appendRecord(exe+".calls", rec)
	if filepath.Base(exe) == "pvesh" {
		os.Exit(pvesh(exe, args))
	}
	if len(args) > 0 && args[0] == "guest" {
		os.Exit(guest(exe, args))
	}
	os.Exit(qm(exe, args, stdin))
}

func appendRecord(path string, rec record) {
	b, _ := json.Marshal(rec)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeqm:", err)
		os.Exit(99)
	}
	defer f.Close()
	f.Write(append(b, '\n'))
}

func qm(exe string, args, stdin []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "400 not enough arguments")
		return 255
	}
	if args[1] != vmid {
		fmt.Fprintf(os.Stderr, "Configuration file 'nodes/pve/qemu-server/%s.conf' does not exist\n", args[1])
		return 2
	}
	state := "running"
	if b, err := os.ReadFile(exe + ".state"); err == nil && strings.TrimSpace(string(b)) == "stopped" {
		state = "stopped"
	}
	set := func(s string) { os.WriteFile(exe+".state", []byte(s+"\n"), 0o600) }
	switch strings.Join(args[0:1], "") + fmt.Sprint(len(args)) {
	case "status2":
		fmt.Printf("status: %s\n", state)
	case "status3":
		if args[2] != "--verbose" {
			fmt.Fprintf(os.Stderr, "Unknown option: %s\n", args[2])
			return 255
		}
		fmt.Printf("cpus: 4\nmemory: 8589934592\nname: devvm\nqmpstatus: %s\nstatus: %s\n", state, state)
	case "config2":
		fmt.Print("boot: order=scsi0\ncores: 4\nmemory: 8192\nname: devvm\n")
		if b, err := os.ReadFile(exe + ".lock"); err == nil {
			fmt.Printf("lock: %s\n", strings.TrimSpace(string(b)))
		}
	case "monitor2":
		for _, line := range stdin {
			if line == "quit" {
				break
			}
			if file, ok := strings.CutPrefix(line, "screendump "); ok {
				fmt.Printf("qm> %s\n", line)
				screendump(exe, file)
				continue
			}
			fmt.Printf("qm> %s\nVM status: %s\n", line, state)
		}
	case "unlock2":
	case "reset2":
		if state != "running" {
			fmt.Fprintf(os.Stderr, "VM %s not running\n", vmid)
			return 255
		}
	case "stop2":
		hold(exe)
		set("stopped")
	case "start2":
		if state == "running" {
			fmt.Fprintf(os.Stderr, "VM %s already running\n", vmid)
			return 255
		}
		set("running")
	default:
		fmt.Fprintf(os.Stderr, "400 unknown command 'qm %s'\n", strings.Join(args, " "))
		return 255
	}
	return 0
}

// hold blocks a stop while the test holds it (see the package comment).
func hold(exe string) {
	if _, err := os.Stat(exe + ".hold"); err != nil {
		return
	}
	if f, err := os.OpenFile(exe+".entered", os.O_WRONLY, 0); err == nil {
		f.Write([]byte("x"))
		f.Close()
	}
	if f, err := os.Open(exe + ".release"); err == nil {
		io.Copy(io.Discard, f)
		f.Close()
	}
}

// screendump copies the test's frame to file, then hangs if told to.
func screendump(exe, file string) {
	b, err := os.ReadFile(exe + ".frame")
	if err != nil {
		fmt.Println("no display")
		return
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		fmt.Println("screendump:", err)
		return
	}
	os.WriteFile(exe+".dumped", []byte(file), 0o600)
	if _, err := os.Stat(exe + ".hangdump"); err == nil {
		time.Sleep(time.Hour)
	}
}

// guest answers `guest cmd 102 <cmd>` and `guest exec 102 --timeout 60 -- …`.
func guest(exe string, args []string) int {
	if len(args) < 3 || args[2] != vmid {
		fmt.Fprintln(os.Stderr, "400 bad guest call")
		return 255
	}
	if _, err := os.Stat(exe + ".agentdead"); err == nil {
		fmt.Fprintln(os.Stderr, "QEMU guest agent is not running")
		return 255
	}
	switch {
	case args[1] == "cmd" && len(args) == 4:
		b, err := os.ReadFile(exe + ".guest-" + args[3])
		if err != nil {
			fmt.Printf("{}\n")
			return 0
		}
		os.Stdout.Write(b)
		return 0
	case args[1] == "exec" && len(args) >= 7 && args[3] == "--timeout" && args[4] == "60" && args[5] == "--":
		b, _ := json.Marshal(map[string]any{"exitcode": 0, "exited": 1, "out-data": args[6:]})
		fmt.Printf("%s\n", b)
		return 0
	}
	fmt.Fprintf(os.Stderr, "400 unknown command 'qm %s'\n", strings.Join(args, " "))
	return 255
}

// pvesh answers the one call pve-gate makes.
func pvesh(exe string, args []string) int {
	if strings.Join(args, " ") != "get /cluster/tasks --output-format json" {
		fmt.Fprintf(os.Stderr, "400 unknown call 'pvesh %s'\n", strings.Join(args, " "))
		return 255
	}
	b, err := os.ReadFile(exe + ".tasks")
	if err != nil {
		fmt.Println("[]")
		return 0
	}
	os.Stdout.Write(b)
	return 0
}
