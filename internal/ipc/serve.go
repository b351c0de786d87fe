package ipc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of ServerConfig.
const (
	DefaultReadTimeout     = 10 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMaxHeaderBytes  = 16 << 10
	// DefaultMaxConnections bounds the connections keyholder.sock serves
	// at once; the web holds a few, and each costs tens of KiB at most.
	DefaultMaxConnections = 64
)

// ServerConfig configures Serve. Its zero value serves nothing (Handler is
// required) and otherwise uses the defaults above.
type ServerConfig struct {
	// Handler answers every request. Required.
	Handler http.Handler
	// Logger receives the HTTP server's own errors; nil means none.
	Logger hclog.Logger
	// ReadTimeout bounds reading one request, headers and body.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response, from the end of its
	// request's headers; zero means none (a verb may run for minutes and
	// is bounded by its own timeout).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Serve waits for requests in flight once
	// ctx ends, before it closes their connections.
	ShutdownTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConnections bounds the connections served at once; one more is
	// closed as soon as it is accepted, before anything is read from it.
	// Zero means DefaultMaxConnections. With ReadTimeout and
	// MaxHeaderBytes it bounds the memory callers can make Serve hold.
	MaxConnections int
	// OnRefused is called for each connection closed over MaxConnections
	// (the keyholder counts them); nil means none.
	OnRefused func()
}

// Serve answers HTTP/1.1 on l until ctx ends, then shuts down gracefully
// (ShutdownTimeout) and closes l, which removes the socket file. Every
// request's context carries its caller's Cred (see PeerCred). It returns nil
// after a shutdown asked for by ctx.
func Serve(ctx context.Context, l *Listener, cfg ServerConfig) error {
	if cfg.Handler == nil {
		_ = l.Close()
		return errors.New("serve: no handler")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	srv := &http.Server{
		Handler:           cfg.Handler,
		ReadHeaderTimeout: orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		ReadTimeout:       orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*Conn); ok {
				return WithCred(ctx, ic.Cred())
			}
			return ctx
		},
	}
	if srv.MaxHeaderBytes <= 0 {
		srv.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	// HTTP/2 is never offered: the API is HTTP/1.1 and nothing else.
	srv.SetKeepAlivesEnabled(true)
	srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}

	capped := &capListener{Listener: l, max: cfg.MaxConnections, refused: cfg.OnRefused}
	if capped.max <= 0 {
		capped.max = DefaultMaxConnections
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(capped) }()
	select {
	case err := <-errc:
		_ = l.Close()
		return fmt.Errorf("serve %s: %w", l.Path(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDefault(cfg.ShutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		logger.Warn("requests still running at shutdown; closing their connections", "error", err)
		_ = srv.Close()
	}
	<-errc
	if err := l.Close(); err != nil {
		return fmt.Errorf("close %s: %w", l.Path(), err)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// capListener hands out at most max connections at a time; each returned
// connection gives its place back when it is closed. Connections over the
// cap are closed at once, never queued: a caller holding every place cannot
// make the next wait.
type capListener struct {
	*Listener
	max     int
	refused func()

	// open is the number of connections handed out and not yet closed.
	open atomic.Int64
}

// Accept implements net.Listener.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ic, ok := c.(*Conn)
		if !ok {
			_ = c.Close()
			continue
		}
		// WARNING: the place is taken before the connection is handed
		// out and given back only by its Close
		// (TestServeCapsConnections).
		if l.open.Add(1) > int64(l.max) {
			l.open.Add(-1)
			_ = ic.Close()
			if l.refused != nil {
				l.refused()
			}
			continue
		}
		ic.release = func() { l.open.Add(-1) }
		return ic, nil
	}
}
