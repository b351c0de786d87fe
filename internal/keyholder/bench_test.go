package keyholder_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/keyholder"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
	"breakglass/internal/testing/testbin"
)

func pngDecode(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }

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

// BenchmarkScreenshotRoundTrip measures a 1024×768 screenshot end to end on
// loopback: client → keyholder.sock → SSH → stock sshd → the real pve-gate
// (one screendump into its own folder, the PPM read and converted to PNG)
// → base64 in the answer → decoded by the client. The fake qm writes the
// simulated VM's console screen (text on black, as a panic or a login
// prompt looks). It reports the median and slowest round trip and the
// PNG's size.
func BenchmarkScreenshotRoundTrip(b *testing.B) {
	dir := shortDir(b)
	gate := buildGate(b)
	// The fake qm reads <its path>.frame: a copy of its own in dir.
	qm := filepath.Join(dir, "qm")
	fakeqm, err := os.ReadFile(filepath.Join(testbin.Build(b, "breakglass/internal/pvegate/testdata/fakeqm"), "fakeqm"))
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(qm, fakeqm, 0o755))
	require.NoError(b, os.WriteFile(qm+".frame", pvesim.RenderPPM(pvesim.PanicScreen), 0o600))
	pvePath, pveKey, devvmPath := newKeys(b, dir)
	command := fmt.Sprintf(`restrict,command="%s --qm %s --vmid 102 --lock %s --run-dir %s --syslog=false"`,
		gate, qm, filepath.Join(dir, "gate.lock"), filepath.Join(dir, "rundir"))
	s := sshdtest.Start(b, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey(command, pveKey.PublicKey())})
	e := newEnv(b, dir, pvePath, pveKey, devvmPath, options{
		pveAddr: s.Addr, pveHostKey: s.HostKey,
		mutate: func(c *keyholder.Config) { c.PVE.User = s.User },
	})
	size := 0
	once := func() time.Duration {
		start := time.Now()
		res, err := e.client.Run(context.Background(), "screenshot", "bench")
		if err == nil && res.ContentType == "image/png" {
			var img image.Image
			var raw []byte
			if raw, err = base64.StdEncoding.DecodeString(res.OutputBase64); err == nil {
				img, err = pngDecode(raw)
				size = len(raw)
				if err == nil && (img.Bounds().Dx() != 1024 || img.Bounds().Dy() != 768) {
					err = fmt.Errorf("a %v screen", img.Bounds())
				}
			}
		}
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("screenshot: %v %.300s", err, res.Output)
		}
		return d
	}
	once() // warm sshd's first fork and the page cache
	n := max(b.N, minSamples)
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		ds = append(ds, once())
	}
	b.StopTimer()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(ms(median(ds)), "median_ms")
	b.ReportMetric(ms(ds[len(ds)-1]), "max_ms")
	b.ReportMetric(float64(size)/1024, "png_KiB")
	b.ReportMetric(0, "ns/op")
}
