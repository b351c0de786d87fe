package redteam

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
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/devvmsim"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
	"breakglass/internal/verbs"
)

// bins are the keyholder, web and probe binaries, built once for this
// test binary.
var bins struct {
	dir, keyholder, web, probe string
}

// probeName is the attacker's tool's name in the work folder.
const probeName = "probe"

// Verdicts the probe prints: "ATTACK <what>: <verdict>[: detail]".
const (
	blocked   = "BLOCKED"
	succeeded = "SUCCEEDED"
	noTarget  = "NO-TARGET"
	planted   = "PLANTED"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "breakglass-redteam-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "redteam:", err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.keyholder = filepath.Join(dir, "keyholder")
	bins.web = filepath.Join(dir, "web")
	bins.probe = filepath.Join(dir, probeName)
	cmd := exec.Command("go", "build", "-o", dir+"/", "breakglass/cmd/keyholder", "breakglass/cmd/web", "breakglass/internal/redteam/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "redteam: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The binaries run as the agent's user.
	_ = os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentUser is the user the web, the keyholder and so the agent run as:
// not root (Landlock does not keep root out of another process's
// /proc/<pid>/environ), and with a passwd entry (OpenSSH refuses a uid
// with no name). nobody has both. When the tests do not run as root they
// run everything as themselves.
func agentUser() (uid, gid int) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid()
	}
	return 65534, 65534
}

// world is everything around the two binaries.
type world struct {
	dir         string
	sessionsDir string
	agentDir    string
	secretFile  string // the bearer token file (API_BEARER_TOKEN_FILE)
	tokenFile   string // its content
	tokenEnv    string // API_BEARER_TOKEN, also set: the web's environment holds it
	vm          *pvesim.VM
	double      *apidouble.Server
	khEnv       map[string]string
	webEnv      map[string]string
}

func newWorld(t testing.TB, script []apidouble.Turn) *world {
	t.Helper()
	// Short paths: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bg-rt-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &world{
		dir:         dir,
		sessionsDir: filepath.Join(dir, "sessions"),
		agentDir:    filepath.Join(dir, "sessions", "agent"),
		secretFile:  filepath.Join(dir, "secrets", "bearer"),
		tokenFile:   "redteam-file-token-" + randHex(t),
		tokenEnv:    "redteam-env-token-" + randHex(t),
		vm:          pvesim.NewVM(verbs.DefaultVMID),
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(w.secretFile), 0o700))
	require.NoError(t, os.WriteFile(w.secretFile, []byte(w.tokenFile+"\n"), 0o600))

	pveKey, pveKeyPath := newKey(t, dir, "pve")
	devvmKey, devvmKeyPath := newKey(t, dir, "devvm")
	pveHost, _ := newKey(t, "", "")
	devvmHost, _ := newKey(t, "", "")
	pve, err := pvesim.Start(pvesim.Config{VM: w.vm, AuthorizedKey: pveKey.PublicKey(), HostKey: pveHost})
	require.NoError(t, err)
	t.Cleanup(func() { pve.Close() })
	devvm, err := devvmsim.Start(devvmsim.Config{User: "breakglass", AuthorizedKey: devvmKey.PublicKey(), HostKey: devvmHost})
	require.NoError(t, err)
	t.Cleanup(func() { devvm.Close() })

	knownHosts := filepath.Join(dir, "known_hosts")
	pins := knownhosts.Line([]string{knownhosts.Normalize(pve.Addr)}, pveHost.PublicKey()) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(devvm.Addr)}, devvmHost.PublicKey()) + "\n"
	require.NoError(t, os.WriteFile(knownHosts, []byte(pins), 0o644))

	w.double, err = apidouble.New(apidouble.Config{Script: script})
	require.NoError(t, err)
	t.Cleanup(w.double.Close)

	uid, gid := agentUser()
	require.NoError(t, filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	}))

	pveIP, pvePort, _ := net.SplitHostPort(pve.Addr)
	devvmIP, devvmPort, _ := net.SplitHostPort(devvm.Addr)
	common := map[string]string{
		"PATH":                   "/usr/local/bin:/usr/bin:/bin",
		"BREAKGLASS_SOCKET_DIR":  filepath.Join(dir, "run"),
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
		// Not about presence: the agent runs read-only verbs only.
		"BREAKGLASS_PRESENCE": "off",
	})
	w.webEnv = merge(common, map[string]string{
		"BREAKGLASS_LISTEN":          "127.0.0.1:0",
		"BREAKGLASS_METRICS_LISTEN":  "127.0.0.1:0",
		"BREAKGLASS_SESSIONS_DIR":    w.sessionsDir,
		"BREAKGLASS_CLAUDE_BIN":      testbin.Claude(t),
		"BREAKGLASS_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
		// Autopilot: every attack runs unasked, the agent's widest reach.
		"BREAKGLASS_AGENT_MODE":                    "autopilot",
		"API_BEARER_TOKEN_FILE":                    w.secretFile,
		"API_BEARER_TOKEN":                         w.tokenEnv,
		"ANTHROPIC_BASE_URL":                       w.double.URL(),
		"ANTHROPIC_API_KEY":                        "test-key",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_TELEMETRY":                        "1",
		"DISABLE_AUTOUPDATER":                      "1",
		"LANG":                                     "C.UTF-8",
	})
	return w
}

func randHex(t testing.TB) string {
	b := make([]byte, 12)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return fmt.Sprintf("%x", b)
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
	block, err := ssh.MarshalPrivateKey(priv, "breakglass redteam "+name)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	return signer, path
}

// proc is one running binary.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	log    bytes.Buffer
}

// start runs bin as the agent's user with exactly env and returns once one
// of its JSON log lines has @message ready; that line's fields are
// returned.
func start(t testing.TB, name, bin string, env map[string]string, ready string) (*proc, map[string]any) {
	t.Helper()
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if os.Geteuid() == 0 {
		uid, gid := agentUser()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
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

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
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

// web is a running web binary.
type web struct {
	*proc
	url, metricsURL string
	client          *http.Client
}

func (w *world) startKeyholder(t testing.TB) *proc {
	t.Helper()
	p, _ := start(t, "keyholder", bins.keyholder, w.khEnv, "serving")
	return p
}

func (w *world) startWeb(t testing.TB) *web {
	t.Helper()
	p, l := start(t, "web", bins.web, w.webEnv, "web listening")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &web{
		proc:       p,
		url:        "http://" + l["addr"].(string),
		metricsURL: "http://" + l["metrics_addr"].(string),
		client:     &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}
}

func (w *web) port(t testing.TB, u string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
	require.NoError(t, err)
	return port
}

func (w *web) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("X-Authentik-Username", "alice")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
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

// turn reads one whole turn of session id after event last.
func (w *web) turn(t testing.TB, id string, last int64) []webtest.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := webtest.Attach(ctx, w.client, w.url, "alice", id, last)
	require.NoError(t, err)
	defer s.Close()
	return s.UntilDone(t)
}

// history reads every event of session id, from the first to the last the
// web lists for it.
func (w *web) history(t testing.TB, id string) []webtest.Event {
	t.Helper()
	code, body := w.do(t, http.MethodGet, "/api/sessions/"+id, "")
	require.Equal(t, http.StatusOK, code, body)
	var info struct {
		LastEventID int64 `json:"last_event_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := webtest.Attach(ctx, w.client, w.url, "alice", id, 0)
	require.NoError(t, err)
	defer s.Close()
	var out []webtest.Event
	for len(out) == 0 || out[len(out)-1].ID < info.LastEventID {
		e, err := s.Next()
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}
