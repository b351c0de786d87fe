package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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

func run() error {
	cfg := devstack.Config{Environ: os.Environ(), Out: os.Stderr}
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "loopback address the browser opens (port 0 picks one)")
	flag.StringVar(&cfg.BinDir, "bin", "", "folder with the keyholder and web binaries (default: this binary's folder)")
	flag.StringVar(&cfg.User, "user", "operator", "identity the edge stand-in asserts")
	flag.StringVar(&cfg.Incident, "incident", "", "trouble the simulated VM starts in: "+strings.Join(devstack.Incidents, ", "))
	flag.Parse()

	cfg.ClaudeBin = os.Getenv("BREAKGLASS_CLAUDE_BIN")
	if cfg.ClaudeBin == "" {
		if p, err := exec.LookPath("claude"); err == nil {
			cfg.ClaudeBin = p
		} else {
			fmt.Fprintln(os.Stderr, "devstack: no claude CLI on PATH: chat turns will end with an error saying how to install it; everything else works")
		}
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "devstack", Output: os.Stderr, Level: hclog.Info})

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
