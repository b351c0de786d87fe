package keyholder_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/keyholder"
)

// BenchmarkStatusRoundTrip compares `status` through the keyholder socket
// (client → keyholder.sock → Go SSH client → sshd → pve-gate) with the same
// verb run by the OpenSSH client against the same stock sshd, alternating
// the two paths, and reports both medians and their ratio.
func BenchmarkStatusRoundTrip(b *testing.B) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		b.Fatalf("ssh client not found (%v): run make deps-apt", err)
	}
	dir := shortDir(b)
	g := startGateSSHD(b, dir)
	e := newEnv(b, dir, g.keyPath, g.key, g.devvm, options{
		pveAddr: g.sshd.Addr, pveHostKey: g.sshd.HostKey,
		mutate: func(c *keyholder.Config) { c.PVE.User = g.sshd.User },
	})
	known := filepath.Join(dir, "known_hosts.ssh")
	require.NoError(b, os.WriteFile(known, []byte(g.sshd.KnownHostsLine()+"\n"), 0o600))
	args := append(g.sshd.SSHArgs(g.keyPath, known), "status")

	viaKeyholder := func() time.Duration {
		start := time.Now()
		res, err := e.client.Run(context.Background(), "status", "bench")
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 || !strings.Contains(res.Output, "status 102") {
			b.Fatalf("keyholder status: %v %+v", err, res)
		}
		return d
	}
	viaOpenSSH := func() time.Duration {
		start := time.Now()
		out, err := exec.Command(sshBin, args...).Output()
		d := time.Since(start)
		if err != nil || !strings.Contains(string(out), "status 102") {
			b.Fatalf("ssh status: %v %q", err, out)
		}
		return d
	}
	// Warm both paths (page cache, sshd's first fork) before measuring.
	viaKeyholder()
	viaOpenSSH()

	// A median needs samples: `make bench` runs with the default
	// -benchtime, which would stop at a handful.
	n := max(b.N, minSamples)
	var kh, ossh []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			kh = append(kh, viaKeyholder())
			ossh = append(ossh, viaOpenSSH())
		} else {
			ossh = append(ossh, viaOpenSSH())
			kh = append(kh, viaKeyholder())
		}
	}
	b.StopTimer()
	mk, mo := median(kh), median(ossh)
	b.ReportMetric(ms(mk), "keyholder_median_ms")
	b.ReportMetric(ms(mo), "openssh_median_ms")
	b.ReportMetric(float64(mk)/float64(mo), "ratio")
	b.ReportMetric(0, "ns/op")
}

// minSamples is the fewest round trips per path a run measures.
const minSamples = 15

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
