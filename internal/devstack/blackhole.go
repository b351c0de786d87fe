package devstack

import (
	"fmt"
	"net"
	"sync"
)

// blackhole is a Proxmox host that accepts TCP and never sends a byte: the
// keyholder's verbs hang until their timeout.
type blackhole struct {
	addr string
	// accepted receives once per accepted connection, without blocking.
	accepted chan struct{}
	ln       net.Listener
	wg       sync.WaitGroup
	// mu protects the following.
	mu    sync.Mutex
	conns []net.Conn
}

func startBlackhole() (*blackhole, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("blackholed Proxmox host: %w", err)
	}
	b := &blackhole{addr: ln.Addr().String(), ln: ln, accepted: make(chan struct{}, 16)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			select {
			case b.accepted <- struct{}{}:
			default:
			}
		}
	}()
	return b, nil
}

// Close stops accepting and drops every connection held.
func (b *blackhole) Close() {
	b.ln.Close()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}
