package sshagent

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/testing/sshdtest"
)

// startStockAgent runs OpenSSH's own ssh-agent holding the key file, for
// comparison, and returns its socket.
func startStockAgent(b *testing.B, keyPath string) string {
	b.Helper()
	sock := filepath.Join(shortTempDir(b), "stock.sock")
	cmd := exec.Command(lookTool(b, "ssh-agent"), "-D", "-a", sock)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// ssh-agent prints its environment lines once the socket listens.
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "echo Agent pid") {
			ready = true
			break
		}
	}
	require.True(b, ready, "ssh-agent did not start")
	add := exec.Command(lookTool(b, "ssh-add"), keyPath)
	add.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "SSH_AUTH_SOCK=" + sock}
	out, err := add.CombinedOutput()
	require.NoError(b, err, "ssh-add: %s", out)
	return sock
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkLoginThroughAgent times `ssh devvm true` against a stock sshd
// through this agent and through OpenSSH's ssh-agent holding the same key,
// alternating the two (and which goes first) in the same run. It reports
// both medians and their ratio (target ≤ 1.05).
func BenchmarkLoginThroughAgent(b *testing.B) {
	keyPath, pub, signer := sshdtest.WriteKey(b, b.TempDir())
	sshd := sshdtest.Start(b, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey("", pub)})
	knownHosts := sshd.WriteKnownHosts(b)
	ours := startAgent(b, Config{Key: signer, DevvmHostKeys: []ssh.PublicKey{sshd.HostKey}, User: sshd.User})
	stock := startStockAgent(b, keyPath)

	login := func(sock string) time.Duration {
		l := sshLogin{agentSock: sock, knownHosts: knownHosts, port: sshd.Port, user: sshd.User, command: "true"}
		start := time.Now()
		out, err := l.run(b)
		d := time.Since(start)
		require.NoError(b, err, "login through %s: %s", sock, out)
		return d
	}
	// One warm-up each: page cache, sshd's first fork.
	login(ours.sock)
	login(stock)

	var oursD, stockD []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			oursD = append(oursD, login(ours.sock))
			stockD = append(stockD, login(stock))
		} else {
			stockD = append(stockD, login(stock))
			oursD = append(oursD, login(ours.sock))
		}
	}
	b.StopTimer()
	mo, ms := median(oursD), median(stockD)
	b.ReportMetric(float64(mo.Microseconds())/1000, "keyholder-median-ms")
	b.ReportMetric(float64(ms.Microseconds())/1000, "ssh-agent-median-ms")
	b.ReportMetric(float64(mo)/float64(ms), "ratio")
	signs := outcomes(b, ours.logs, "sign")
	require.Len(b, signs, b.N+1, "every login (and the warm-up) was signed by this agent")
	require.NotContains(b, signs, "unbound")
}

// BenchmarkBindAndSign is the agent's own work for one login: a bind (one
// Ed25519 verification) and a sign (parse and policy, one Ed25519
// signature), without sockets.
func BenchmarkBindAndSign(b *testing.B) {
	f := fixedFixture(b)
	bind := bindBody(b, f.hostKey, f.boundSID, false)
	key := f.devvmKey.PublicKey()
	data := userauthData(f.boundSID, testUser, key, f.hostKey.PublicKey())
	for b.Loop() {
		a := f.a.s.newConnAgent(peerCred{uid: -1, pid: -1})
		if _, err := a.Extension(extSessionBind, bind); err != nil {
			b.Fatal(err)
		}
		if _, err := a.SignWithFlags(key, data, 0); err != nil {
			b.Fatal(err)
		}
	}
}
