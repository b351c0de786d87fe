package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/devvmsim"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
	"breakglass/internal/verbs"
)

// bins are the keyholder and web binaries, built once for this test binary.
var bins struct {
	dir, keyholder, web string
}

func TestMain(m *testing.M) {
	dir, err := testbin.BuildErr("breakglass/cmd/keyholder", "breakglass/cmd/web")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.keyholder = filepath.Join(dir, "keyholder")
	bins.web = filepath.Join(dir, "web")
	code := m.Run()
	testbin.Cleanup()
	// The processes are the tests' subjects; the goroutines that drove
	// them (readers, the blackhole, subscribers) must all have ended.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "systemtest: goroutines left running:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// soak reports whether the long forms run (make soak sets BREAKGLASS_SOAK=1).
func soak() bool { return os.Getenv("BREAKGLASS_SOAK") == "1" }

// Ways a world's hosts can be broken from the start.
const (
	pveSim       = ""          // pvesim runs the real pve-gate logic
	pveBlackhole = "blackhole" // accepts TCP and never answers
	pveDown      = "down"      // a closed port
	devvmSim     = ""          // devvmsim lets the devvm key in
	devvmDown    = "down"      // a closed port
)

// options say how a world is built.
type options struct {
	pve    string
	devvm  string
	script []apidouble.Turn
}

// world is everything around the two binaries: keys, pinned host keys, the
// doubles, and the environment each binary gets.
type world struct {
	dir         string
	socketDir   string
	sessionsDir string
	agentDir    string // the web-owned folder the agent reads: ssh config, wrappers
	vm          *pvesim.VM
	pve         *pvesim.Server
	devvm       *devvmsim.Server
	double      *apidouble.Server
	// blackholed receives once per connection the blackhole accepts.
	blackholed chan struct{}
	khEnv      map[string]string
	webEnv     map[string]string
}

// newWorld builds the keys, the doubles and both environments.
func newWorld(t testing.TB, o options) *world {
	t.Helper()
	// Short paths: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bg-sys-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &world{
		dir:         dir,
		socketDir:   filepath.Join(dir, "run"),
		sessionsDir: filepath.Join(dir, "sessions"),
		agentDir:    filepath.Join(dir, "sessions", "agent"),
		vm:          pvesim.NewVM(verbs.DefaultVMID),
		blackholed:  make(chan struct{}, 16),
	}
	pveKey, pveKeyPath := newKey(t, dir, "pve")
	devvmKey, devvmKeyPath := newKey(t, dir, "devvm")
	pveHost, _ := newKey(t, "", "")
	devvmHost, _ := newKey(t, "", "")

	var pveAddr string
	switch o.pve {
	case pveSim:
		w.pve, err = pvesim.Start(pvesim.Config{VM: w.vm, AuthorizedKey: pveKey.PublicKey(), HostKey: pveHost,
			AllowGuestExec: true})
		require.NoError(t, err)
		t.Cleanup(func() { w.pve.Close() })
		pveAddr = w.pve.Addr
	case pveBlackhole:
		pveAddr = blackhole(t, w.blackholed)
	case pveDown:
		pveAddr = closedPort(t)
	default:
		t.Fatalf("unknown pve option %q", o.pve)
	}
	var devvmAddr string
	switch o.devvm {
	case devvmSim:
		w.devvm, err = devvmsim.Start(devvmsim.Config{User: "breakglass", AuthorizedKey: devvmKey.PublicKey(), HostKey: devvmHost,
			Reachable: w.vm.SSHUp})
		require.NoError(t, err)
		t.Cleanup(func() { w.devvm.Close() })
		devvmAddr = w.devvm.Addr
	case devvmDown:
		devvmAddr = closedPort(t)
	default:
		t.Fatalf("unknown devvm option %q", o.devvm)
	}

	knownHosts := filepath.Join(dir, "known_hosts")
	pins := knownhosts.Line([]string{knownhosts.Normalize(pveAddr)}, pveHost.PublicKey()) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(devvmAddr)}, devvmHost.PublicKey()) + "\n"
	require.NoError(t, os.WriteFile(knownHosts, []byte(pins), 0o644))

	w.double, err = apidouble.New(apidouble.Config{Script: o.script})
	require.NoError(t, err)
	t.Cleanup(w.double.Close)

	pveIP, pvePort, _ := net.SplitHostPort(pveAddr)
	devvmIP, devvmPort, _ := net.SplitHostPort(devvmAddr)
	common := map[string]string{
		"PATH":                   os.Getenv("PATH"),
		"BREAKGLASS_SOCKET_DIR":  w.socketDir,
		"BREAKGLASS_DEVVM_HOST":  devvmIP,
		"BREAKGLASS_DEVVM_PORT":  devvmPort,
		"BREAKGLASS_DEVVM_USER":  "breakglass",
		"BREAKGLASS_KNOWN_HOSTS": knownHosts,
	}
	w.khEnv = merge(common, map[string]string{
		"BREAKGLASS_PVE_HOST":                 pveIP,
		"BREAKGLASS_PVE_PORT":                 pvePort,
		"BREAKGLASS_PVE_USER":                 "root",
		"BREAKGLASS_PVE_KEY":                  pveKeyPath,
		"BREAKGLASS_DEVVM_KEY":                devvmKeyPath,
		"BREAKGLASS_VMID":                     strconv.Itoa(verbs.DefaultVMID),
		"BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS": "30",
		// The whole-system tests that are not about presence say so
		// explicitly; presence_test.go runs it required.
		"BREAKGLASS_PRESENCE": "off",
	})
	w.webEnv = merge(common, map[string]string{
		"BREAKGLASS_LISTEN":          "127.0.0.1:0",
		"BREAKGLASS_METRICS_LISTEN":  "127.0.0.1:0",
		"BREAKGLASS_SESSIONS_DIR":    w.sessionsDir,
		"BREAKGLASS_CLAUDE_BIN":      testbin.Claude(t),
		"BREAKGLASS_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
		// Nobody answers permission questions in these tests.
		"BREAKGLASS_AGENT_MODE":                    "autopilot",
		"ANTHROPIC_BASE_URL":                       w.double.URL(),
		"ANTHROPIC_API_KEY":                        "test-key",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_TELEMETRY":                        "1",
		"DISABLE_AUTOUPDATER":                      "1",
	})
	return w
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// newKey generates an Ed25519 key; with a name it also writes the private
// key (OpenSSH format, mode 0600) as dir/name and returns its path.
func newKey(t testing.TB, dir, name string) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	if name == "" {
		return signer, ""
	}
	block, err := ssh.MarshalPrivateKey(priv, "breakglass systemtest "+name)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	return signer, path
}

// blackhole listens on loopback, accepts every connection and never writes
// a byte, as a host whose sshd is wedged would. Each accept is announced on
// accepted (without blocking).
func blackhole(t testing.TB, accepted chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// closedPort is a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// proc is one running binary.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	log    bytes.Buffer
}

// start runs bin with exactly env and returns once one of its JSON log
// lines has @message ready; fields of that line are returned.
func start(t testing.TB, name, bin string, env map[string]string, ready string) (*proc, map[string]any) {
	t.Helper()
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	readyc := make(chan map[string]any, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			var l map[string]any
			if !sent && json.Unmarshal([]byte(line), &l) == nil && l["@message"] == ready {
				readyc <- l
				sent = true
			}
		}
	}()
	go func() {
		<-readDone
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case l := <-readyc:
		return p, l
	case <-p.exited:
		t.Fatalf("%s exited before it was ready:\n%s", name, p.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60s:\n%s", name, p.logs())
	}
	return nil, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.exited
}

// stop sends SIGTERM and waits; a process that does not stop in 30 s is
// killed and the test fails.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop on SIGTERM:\n%s", p.name, p.logs())
	}
}

// startKeyholder runs the keyholder binary with the world's environment
// plus extra, and returns once it serves.
func (w *world) startKeyholder(t testing.TB, extra map[string]string) *proc {
	t.Helper()
	p, _ := start(t, "keyholder", bins.keyholder, merge(w.khEnv, extra), "serving")
	return p
}

// web is a running web binary.
type web struct {
	*proc
	url        string
	metricsURL string
	client     *http.Client
}

// startWeb runs the web binary with the world's environment plus extra,
// and returns once it listens.
func (w *world) startWeb(t testing.TB, extra map[string]string) *web {
	t.Helper()
	p, l := start(t, "web", bins.web, merge(w.webEnv, extra), "web listening")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &web{
		proc:       p,
		url:        "http://" + l["addr"].(string),
		metricsURL: "http://" + l["metrics_addr"].(string) + "/metrics",
		client:     &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}
}

// doErr sends a request as operator "alice" (the trusted proxy's header)
// and returns the status and body; err is a transport failure.
func (w *web) doErr(method, path, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.url+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Authentik-Username", "alice")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (w *web) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	code, b, err := w.doErr(method, path, body)
	require.NoError(t, err, "%s %s", method, path)
	return code, b
}

func (w *web) newSession(t testing.TB) string {
	t.Helper()
	code, body := w.do(t, http.MethodPost, "/api/sessions", "{}")
	require.Equal(t, http.StatusCreated, code, body)
	var info struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	return info.ID
}

func (w *web) prompt(t testing.TB, id, text string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"text": text})
	code, body := w.do(t, http.MethodPost, "/api/sessions/"+id+"/prompt", string(b))
	require.Equal(t, http.StatusAccepted, code, body)
}

// metric reads one unlabelled sample from the web's metrics listener.
func (w *web) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := w.client.Get(w.metricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// ev and stream are the SSE client of internal/testing/webtest.
type (
	ev     = webtest.Event
	stream = webtest.Stream
)

// attachErr opens session id's stream after event last, as alice.
func (w *web) attachErr(ctx context.Context, client *http.Client, id string, last int64) (*stream, error) {
	return webtest.Attach(ctx, client, w.url, "alice", id, last)
}

func (w *web) attach(t testing.TB, ctx context.Context, id string, last int64) *stream {
	t.Helper()
	s, err := w.attachErr(ctx, w.client, id, last)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// turn reads one whole turn of session id after event last, bounded by d.
func (w *web) turn(t testing.TB, id string, last int64, d time.Duration) []ev {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.attach(t, ctx, id, last).UntilDone(t)
}

// procStat is what /proc/<pid> says about a process.
type procStat struct {
	fds     int
	threads int
	rssKiB  int
}

func statOf(t testing.TB, pid int) procStat {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	st := procStat{fds: len(fds)}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			st.threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			st.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	return st
}

// procsMatching lists the live (not zombie) pids whose command line
// contains mark.
func procsMatching(mark string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cl, []byte(mark)) {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// eventually retries cond until it holds or d passes, and returns its last
// answer. Between tries it yields for a short tick: a condition on another
// process (a count in /proc, a gauge) has no signal to wait on.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
