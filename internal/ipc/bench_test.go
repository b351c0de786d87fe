package ipc_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"breakglass/internal/ipc"
)

// BenchmarkSocketRoundTrip is the socket layer's own cost per request: one
// GET over keyholder.sock (peer credentials read at accept, keep-alive
// connection reused), the client's JSON decode included.
func BenchmarkSocketRoundTrip(b *testing.B) {
	dir, err := os.MkdirTemp("", "ipcb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, ipc.SocketName)
	l, err := ipc.Listen(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, ok := ipc.PeerCred(r.Context())
			_ = json.NewEncoder(w).Encode(ipc.Health{OK: ok})
		}), ShutdownTimeout: time.Second})
	}()
	c := ipc.NewClient(path)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Healthz(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Close()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
