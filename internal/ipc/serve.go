package ipc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of ServerConfig.
const (
	DefaultReadTimeout     = 10 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMaxHeaderBytes  = 16 << 10
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

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
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
