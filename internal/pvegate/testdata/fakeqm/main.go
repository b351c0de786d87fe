// Command fakeqm stands in for Proxmox's qm in pve-gate's end-to-end tests.
// It finds its files next to its own executable (a forced command sees
// sshd's environment, not the test's): <exe>.calls gets one JSON line per
// call (argv, environment, stdin), <exe>.state holds the simulated VM's
// state (running unless it says stopped). When <exe>.hold exists, stop
// first opens the FIFO <exe>.entered for writing (so the test knows qm is
// running) and then waits for the FIFO <exe>.release to be closed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
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
	case "monitor2":
		for _, line := range stdin {
			if line == "quit" {
				break
			}
			fmt.Printf("qm> %s\nVM status: %s\n", line, state)
		}
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
