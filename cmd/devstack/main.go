package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/devstack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// claudeCLI is the claude CLI the stack's web runs: BREAKGLASS_CLAUDE_BIN
// (make run sets it to the pinned CLI it installs), else the pinned CLI in
// .tools next to the bin folder this binary is in, else one on PATH.
func claudeCLI() string {
	if p := os.Getenv("BREAKGLASS_CLAUDE_BIN"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		pinned := filepath.Join(filepath.Dir(exe), "..", ".tools", "node_modules", ".bin", "claude")
		if _, err := os.Stat(pinned); err == nil {
			return pinned
		}
	}
	if p, err := exec.LookPath("claude"); err == nil {
		fmt.Fprintln(os.Stderr, "devstack: using the claude CLI on PATH ("+p+"); make run installs and uses the pinned one")
		return p
	}
	fmt.Fprintln(os.Stderr, "devstack: no claude CLI (run make deps-claude): chat turns will end with an error saying how to install it; everything else works")
	return ""
}

func run() error {
	cfg := devstack.Config{Environ: os.Environ(), Out: os.Stderr}
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "loopback address the browser opens (port 0 picks one)")
	flag.StringVar(&cfg.BinDir, "bin", "", "folder with the keyholder and web binaries (default: this binary's folder)")
	flag.StringVar(&cfg.User, "user", "operator", "identity the edge stand-in asserts")
	flag.StringVar(&cfg.Incident, "incident", "", "trouble the simulated VM starts in: "+strings.Join(devstack.Incidents, ", "))
	jsonLogs := flag.Bool("json", false, "pass the binaries' JSON log lines as they are (default: one readable line per event)")
	flag.Parse()
	cfg.Readable = !*jsonLogs
	cfg.ClaudeBin = claudeCLI()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "devstack", Output: os.Stderr, Level: hclog.Info, TimeFormat: "15:04:05"})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("breakglass is up: %s\n", s.URL)
	fmt.Printf("metrics: %s\nfolder: %s\n", s.MetricsURL, s.Dir)
	if s.EnrollCode != "" {
		fmt.Printf("operator presence: required; enroll a passkey at %senroll with the code %s (15 minutes, 5 tries)\noperators file: %s\n", s.URL, s.EnrollCode, s.OperatorsFile)
	}
	fmt.Println("Ctrl-C stops everything.")

	select {
	case <-ctx.Done():
	case <-s.Done():
		fmt.Fprintln(os.Stderr, "devstack: a process of the stack exited; stopping")
	}
	return s.Close()
}
