package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"

	"breakglass/internal/agenthome"
)

// sshCheck returns the health ladder's ssh rung: `ssh devvm true` with the
// agent's own ssh config (the keyholder's agent, the pinned host key), in
// batch mode, bounded by ctx. No shell: an argv.
func sshCheck(sshConfig string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, agenthome.DefaultRealSSH, "-F", sshConfig,
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", agenthome.HostAlias, "true")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			msg := strings.TrimSpace(out.String())
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			if len(msg) > 200 {
				msg = msg[:200]
			}
			return fmt.Errorf("ssh devvm: %s (exit %d)", msg, exit.ExitCode())
		}
		return fmt.Errorf("ssh devvm: %w", err)
	}
}
