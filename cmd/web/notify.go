package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/api/wire"
	"breakglass/internal/notify"
	"breakglass/internal/session"
	"breakglass/internal/vmwatch"
)

// pushDir is the notifier's folder under the sessions folder (not a
// session id, so the session manager leaves it alone).
const pushDir = "push"

// maxNtfyTokenBytes bounds the ntfy token file.
const maxNtfyTokenBytes = 4096

// notifications are the web's notifier and VM watch (docs/notifications.md).
// A notifier that cannot start (an unreadable key file) is logged and its
// routes answer 503: the console itself works without notifications.
type notifications struct {
	n       *notify.Notifier // nil when off
	offWhy  string
	watch   *vmwatch.Watch
	wg      sync.WaitGroup
	stopped context.CancelFunc
}

// startNotifications builds the notifier (push and ntfy) and the VM watch.
// Only a bad ntfy token file is an error: it was configured on purpose.
func startNotifications(cfg config, kh vmwatch.Keyholder, reg prometheus.Registerer, log hclog.Logger) (*notifications, error) {
	token := ""
	if cfg.NtfyTokenFile != "" {
		b, err := readSmallFile(cfg.NtfyTokenFile, maxNtfyTokenBytes)
		if err != nil {
			return nil, fmt.Errorf("BREAKGLASS_NTFY_TOKEN_FILE: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" || strings.ContainsAny(token, "\x00\r\n") {
			return nil, fmt.Errorf("BREAKGLASS_NTFY_TOKEN_FILE: %s holds no token on one line", cfg.NtfyTokenFile)
		}
	}
	nt := &notifications{}
	subject := ""
	if strings.HasPrefix(cfg.PublicURL, "https://") {
		subject = cfg.PublicURL
	}
	n, err := notify.New(notify.Config{
		Dir:        filepath.Join(cfg.SessionsDir, pushDir),
		Subject:    subject,
		NtfyURL:    cfg.NtfyURL,
		NtfyToken:  token,
		PublicURL:  cfg.PublicURL,
		Logger:     log.Named("notify"),
		Registerer: reg,
	})
	if err != nil {
		nt.offWhy = err.Error()
		log.Error("notifications are off", "error", err)
	} else {
		nt.n = n
		if cfg.NtfyURL != "" && cfg.PublicURL == "" {
			log.Warn("BREAKGLASS_PUBLIC_URL is empty: ntfy messages carry no link to the page")
		}
	}
	w, err := vmwatch.New(vmwatch.Config{
		Keyholder:  kh,
		Interval:   cfg.WatchInterval,
		OnChange:   nt.vmChanged,
		Logger:     log.Named("watch"),
		Registerer: reg,
	})
	if err != nil {
		if nt.n != nil {
			nt.n.Close()
		}
		return nil, err
	}
	nt.watch = w
	return nt, nil
}

// readSmallFile reads a secret file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, limit+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(n) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b[:n], nil
}

func (nt *notifications) vmChanged(_, to vmwatch.State) {
	if nt.n != nil && to != vmwatch.Unknown {
		nt.n.VMChanged(notify.VMState(to))
	}
}

// observer is the session manager's hook (nil when notifications are off).
func (nt *notifications) observer() session.Observer {
	if nt.n == nil {
		return nil
	}
	return nt.n
}

// routes are the push routes: the notifier's, or ones that say why
// notifications are off.
func (nt *notifications) routes() []wire.Route {
	if nt.n != nil {
		return nt.n.Routes()
	}
	return notify.OffRoutes(nt.offWhy)
}

// run starts the VM watch until stop.
func (nt *notifications) run(ctx context.Context) {
	ctx, nt.stopped = context.WithCancel(ctx)
	nt.wg.Add(1)
	go func() {
		defer nt.wg.Done()
		nt.watch.Run(ctx)
	}()
}

// stop ends the watch and the notifier's workers and waits for them.
func (nt *notifications) stop() {
	if nt.stopped != nil {
		nt.stopped()
	}
	nt.wg.Wait()
	if nt.n != nil {
		nt.n.Close()
	}
}
