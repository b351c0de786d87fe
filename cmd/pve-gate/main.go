package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/pvegate"
	"breakglass/internal/verbs"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run reads flags and the environment, builds the gate and returns the
// process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pve-gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg pvegate.Config
	fs.IntVar(&cfg.VMID, "vmid", verbs.DefaultVMID, "the one Proxmox VM id this gate acts on")
	fs.StringVar(&cfg.QM, "qm", pvegate.DefaultQM, "absolute path of qm")
	lockPath := fs.String("lock", pvegate.DefaultLockPath, "host lock file taken by mutating verbs")
	fs.DurationVar(&cfg.CommandTimeout, "command-timeout", pvegate.DefaultCommandTimeout, "timeout of each qm command of status and the mutating verbs")
	fs.DurationVar(&cfg.SectionTimeout, "section-timeout", pvegate.DefaultSectionTimeout, "timeout of each forensics section and each status poll of cycle")
	fs.DurationVar(&cfg.StopWait, "stop-wait", pvegate.DefaultStopWait, "how long cycle waits for the VM to say stopped before giving up")
	fs.StringVar(&cfg.Pvesh, "pvesh", pvegate.DefaultPvesh, "absolute path of pvesh (tasks)")
	fs.StringVar(&cfg.Serial, "serial", "", "the VM's serial console socket read by console (default /var/run/qemu-server/<vmid>.serial0)")
	fs.BoolVar(&cfg.AllowGuestExec, "allow-guest-exec", false, "let guest-exec run a command inside the guest through the QEMU guest agent")
	fs.StringVar(&cfg.RunDir, "run-dir", pvegate.DefaultRunDir, "root-only folder (0700) under which screenshot makes its own temporary folder")
	useSyslog := fs.Bool("syslog", true, "also send the log line of each call to syslog (auth facility), if /dev/log exists")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return pvegate.ExitOK
		}
		return pvegate.ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pve-gate: takes no arguments (the verb comes from SSH_ORIGINAL_COMMAND), got %d\n", fs.NArg())
		return pvegate.ExitConfig
	}
	cfg.Lock = pvegate.FileLock{Path: *lockPath}

	logOut := stderr
	if *useSyslog {
		// The forced command's stderr goes back to the SSH client; syslog
		// is what lands in the host's journal.
		if w, err := syslog.New(syslog.LOG_AUTH|syslog.LOG_INFO, "pve-gate"); err == nil {
			defer w.Close()
			logOut = io.MultiWriter(stderr, w)
		}
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "pve-gate", Output: logOut, Level: hclog.Info})

	gate, err := pvegate.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pve-gate: %v\n", err)
		return pvegate.ExitConfig
	}
	// WARNING: a client that goes away (the keyholder's timeout, a dropped
	// network) must not stop a verb halfway: a cycle killed between stop and
	// start would leave the VM off. Its closed stdout would raise SIGPIPE,
	// which kills a Go program writing to fd 1, so SIGPIPE and SIGHUP are
	// ignored (writes then just fail) and the verb runs on, bounded by its
	// own timeouts. Only SIGTERM or SIGINT (an operator on the host) cancel.
	// Guarded by TestSSHClientDisconnectDoesNotStopCycle.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// An unset SSH_ORIGINAL_COMMAND (ssh with no command) is the empty
	// string, which the verb table refuses.
	req := pvegate.Request{Command: os.Getenv("SSH_ORIGINAL_COMMAND"), Client: os.Getenv("SSH_CONNECTION")}
	return gate.Run(ctx, req, stdout, stderr)
}
