package ui

// The page end to end: Debian's Chromium (driven by playwright-core from
// test/e2e/real.test.mjs) against the local stack (internal/devstack: the
// real web and keyholder binaries, the simulated Proxmox host running the
// real pve-gate logic, the simulated devvm), with the real claude CLI
// talking to the scripted Messages API double. Between the browser and the
// stack's edge sits a pass-through proxy that can cut every open event
// stream from the server side.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/devstack"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/pushdouble"
	"breakglass/internal/testing/testbin"
)

func TestEndToEndInChromium(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	claude := testbin.Claude(t)
	if _, err := os.Stat(filepath.Join(root, "ui", "node_modules", "playwright-core")); err != nil {
		t.Fatal("ui/node_modules missing (playwright-core, axe-core): run make deps-ui")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("/usr/bin/chromium missing: run make deps-apt")
	}
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node missing: install Node.js (make test needs it)")

	t.Cleanup(testbin.Cleanup)
	bin := testbin.Build(t, "breakglass/cmd/web", "breakglass/cmd/keyholder")

	double, err := apidouble.New(apidouble.Config{})
	require.NoError(t, err)
	t.Cleanup(double.Close)

	// The browser reaches the stack through two proxies of the test's own:
	// the cutter in front of the edge (signed in by the edge's header), and
	// one straight to the web (no header: passkey sign-in). Both are
	// origins the keyholder accepts. The e2e passkey is enrolled before
	// start; the Enroll page enrolls one more with the printed code.
	cutterLn, cutterOrigin := listenLocalhost(t)
	signinLn, signinOrigin := listenLocalhost(t)
	e2ePasskey := passkey.New(devstack.RPID, cutterOrigin)

	logs := lineLogger(t, "stack")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := devstack.Start(ctx, devstack.Config{
		Listen:     "127.0.0.1:0",
		BinDir:     bin,
		ClaudeBin:  claude,
		APIBaseURL: double.URL(),
		Environ: []string{
			"PATH=" + os.Getenv("PATH"),
			"LANG=C.UTF-8",
			"ANTHROPIC_API_KEY=test",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
			"DISABLE_TELEMETRY=1",
			"DISABLE_AUTOUPDATER=1",
			"BREAKGLASS_AGENT_MUTATING_VERBS=approve",
			// Nobody answers permission questions unless a test sets
			// its session's mode.
			"BREAKGLASS_AGENT_MODE=autopilot",
		},
		Out:       logs,
		Origins:   []string{cutterOrigin, signinOrigin},
		Operators: []string{e2ePasskey.Line("e2e")},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = stack.Close() })

	target, err := url.Parse(stack.URL)
	require.NoError(t, err)
	cutter := newCutter(target, log.New(logs, "cutter: ", 0))
	pageURL := serveOn(t, cutterLn, cutter)
	require.Equal(t, cutterOrigin, strings.Replace(pageURL, "127.0.0.1", "localhost", 1))
	pageURL = cutterOrigin
	webURL, err := url.Parse(stack.WebURL)
	require.NoError(t, err)
	serveOn(t, signinLn, httputil.NewSingleHostReverseProxy(webURL))

	ctl := mux.NewRouter()
	ctl.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"cut":%d}`, cutter.cut())
	}).Methods(http.MethodPost)
	ctl.HandleFunc("/turn/{kind}", func(w http.ResponseWriter, r *http.Request) {
		turns, ok := scenarios[mux.Vars(r)["kind"]]
		if !ok {
			http.Error(w, "no such scenario", http.StatusNotFound)
			return
		}
		double.Push(turns()...)
		fmt.Fprint(w, `{"ok":true}`)
	}).Methods(http.MethodPost)
	ctl.HandleFunc("/passkey", func(w http.ResponseWriter, r *http.Request) {
		// The e2e passkey as WebAuthn.addCredential takes it (binary
		// fields in standard base64), the enrollment code, and the origin
		// for passkey sign-in.
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"credential": map[string]any{
				"credentialId":         base64.StdEncoding.EncodeToString(e2ePasskey.ID),
				"isResidentCredential": false,
				"rpId":                 devstack.RPID,
				"privateKey":           base64.StdEncoding.EncodeToString(e2ePasskey.PKCS8()),
				"signCount":            0,
			},
			"enrollCode": stack.EnrollCode,
			"signinURL":  signinOrigin,
		})
	}).Methods(http.MethodGet)
	ctl.HandleFunc("/model-saw", func(w http.ResponseWriter, r *http.Request) {
		// Whether a request to the model carried the text (a steering
		// message reaching the running turn).
		text := r.URL.Query().Get("text")
		saw := false
		for _, req := range double.MessageRequests() {
			saw = saw || (text != "" && strings.Contains(string(req.Body), text))
		}
		fmt.Fprintf(w, `{"saw":%t}`, saw)
	}).Methods(http.MethodGet)
	ctl.HandleFunc("/qm", func(w http.ResponseWriter, r *http.Request) {
		// The qm commands the simulated Proxmox host ran that change the VM.
		calls := []string{}
		for _, c := range stack.VM.Calls() {
			// Reads (status, config, the monitor's screendump, the
			// guest agent's fixed commands) change nothing.
			read := len(c) > 1 && (c[1] == "status" || c[1] == "config" || c[1] == "monitor" ||
				(c[1] == "guest" && len(c) > 2 && c[2] == "cmd"))
			if len(c) > 1 && !read {
				calls = append(calls, strings.Join(c, " "))
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(calls)
	}).Methods(http.MethodGet)
	// The push service the settings page's (stubbed) PushManager
	// subscribes to: it checks each push's VAPID JWT and decrypts it.
	push, err := pushdouble.New("")
	require.NoError(t, err)
	t.Cleanup(push.Close)
	pushSub, err := push.Subscribe()
	require.NoError(t, err)
	var pushMu sync.Mutex
	pushed := []json.RawMessage{}
	stopPush := make(chan struct{})
	pushDone := make(chan struct{})
	go func() {
		defer close(pushDone)
		for {
			select {
			case <-stopPush:
				return
			case m := <-push.Delivered():
				pushMu.Lock()
				pushed = append(pushed, m.Plaintext)
				pushMu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(stopPush)
		<-pushDone
	})
	ctl.HandleFunc("/push/subscription", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pushSub)
	}).Methods(http.MethodGet)
	ctl.HandleFunc("/push/delivered", func(w http.ResponseWriter, r *http.Request) {
		pushMu.Lock()
		defer pushMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pushed)
	}).Methods(http.MethodGet)
	ctlURL := serve(t, ctl)

	t.Run("served-headers", func(t *testing.T) {
		// The web serves this package's files: index.html revalidated every
		// time, hashed assets cached for good, each with its content type.
		index, err := fs.ReadFile(FS(), "index.html")
		require.NoError(t, err)
		asset := regexp.MustCompile(`src="/(assets/[^"]+\.js)"`).FindSubmatch(index)
		require.NotNil(t, asset, "index.html names its script")
		cases := []struct {
			name, path, contentType, cache string
		}{
			{"index", "/", "text/html", "no-cache"},
			{"script", "/" + string(asset[1]), "javascript", "immutable"},
			{"manifest", "/manifest.json", "application/json", "no-cache"},
			{"icon", "/icon-192.png", "image/png", "no-cache"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res, err := http.Get(pageURL + c.path)
				require.NoError(t, err)
				res.Body.Close()
				require.Equal(t, http.StatusOK, res.StatusCode)
				assert.Contains(t, res.Header.Get("Content-Type"), c.contentType)
				assert.Contains(t, res.Header.Get("Cache-Control"), c.cache)
			})
		}
	})

	// BREAKGLASS_E2E_ONLY=<regexp> runs only the scenarios it matches.
	args := []string{"--test", "--test-concurrency=1"}
	if only := os.Getenv("BREAKGLASS_E2E_ONLY"); only != "" {
		args = append(args, "--test-name-pattern="+only)
	}
	cmd := exec.Command(node, append(args, "test/e2e/real.test.mjs")...)
	cmd.Dir = filepath.Join(root, "ui")
	cmd.Env = append(os.Environ(), "BREAKGLASS_E2E_URL="+pageURL, "BREAKGLASS_E2E_CONTROL="+ctlURL)
	e2e := lineLogger(t, "e2e")
	cmd.Stdout = e2e
	cmd.Stderr = e2e
	require.NoError(t, cmd.Run(), "the Chromium suite failed (screenshots in ui/out/)")
}

// scenarios are the scripted answers the suite asks for before each prompt.
var scenarios = map[string]func() []apidouble.Turn{
	// A diagnosis: text streamed word by word, one Bash call, an answer.
	"diagnose": func() []apidouble.Turn {
		return []apidouble.Turn{
			apidouble.T(
				apidouble.Text("Let me look at the devvm first, starting with its uptime and load.").Every(120*time.Millisecond),
				apidouble.Bash("echo 'up 2 days, load average: 0.08'"),
			),
			apidouble.AfterToolResult(
				apidouble.Text("The devvm answers and its load is low: nothing to repair.").Every(120 * time.Millisecond),
			),
		}
	},
	// A long answer, streamed slowly, for the Stop button.
	"slow": func() []apidouble.Turn {
		return []apidouble.Turn{
			apidouble.T(apidouble.Text(strings.Repeat("Still reading the journal of the devvm. ", 20)).Every(250 * time.Millisecond)),
		}
	},
	// A command the claude CLI asks about (it writes outside the work
	// folder): in careful mode it waits for the operator's Allow or Deny.
	"permission": func() []apidouble.Turn {
		return []apidouble.Turn{
			apidouble.T(
				apidouble.Text("I need to write a marker outside my folder."),
				apidouble.Bash("touch /tmp/breakglass-e2e-permission && echo touched"),
			),
			apidouble.AfterToolResult(apidouble.Text("Noted.")),
		}
	},
	// A tool that takes a few seconds, so a message can be sent into the
	// turn while it runs.
	"steer": func() []apidouble.Turn {
		return []apidouble.Turn{
			apidouble.T(apidouble.Text("Looking at the load first."), apidouble.Bash("sleep 5; echo load-ok")),
			apidouble.AfterToolResult(apidouble.Text("Load is fine, and dmesg is clean.")),
		}
	},
	// The agent asks for a reset through `pve`, which waits for approval.
	"approval": func() []apidouble.Turn {
		return []apidouble.Turn{
			apidouble.T(
				apidouble.Text("The guest kernel looks hung; I will ask to reset the VM."),
				apidouble.Bash("pve reset"),
			),
			apidouble.AfterToolResult(apidouble.Text("The VM was reset.")),
		}
	},
}

// cutter passes requests through to the stack's edge and can end every
// open event stream from the server side.
type cutter struct {
	proxy *httputil.ReverseProxy
	// mu protects the following.
	mu      sync.Mutex
	streams map[int]context.CancelFunc
	next    int
}

func newCutter(edge *url.URL, errs *log.Logger) *cutter {
	return &cutter{
		proxy: &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(edge)
				r.Out.Host = r.In.Host
			},
			FlushInterval: -1,
			ErrorLog:      errs, // a cut stream is reported here; it is expected
		},
		streams: map[int]context.CancelFunc{},
	}
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/stream") {
		c.proxy.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	c.mu.Lock()
	id := c.next
	c.next++
	c.streams[id] = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, id)
		c.mu.Unlock()
		cancel()
	}()
	c.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// cut ends every open stream and says how many there were.
func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cancel := range c.streams {
		cancel()
	}
	return len(c.streams)
}

// serve runs h on a loopback port until the test ends and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveOn(t, l, h)
}

// listenLocalhost binds a loopback port the browser opens as
// http://localhost:<port>: WebAuthn needs a host name, and the keyholder
// must know the origin before it starts.
func listenLocalhost(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l, fmt.Sprintf("http://localhost:%d", l.Addr().(*net.TCPAddr).Port)
}

// serveOn serves h on l until the test ends and returns l's URL.
func serveOn(t *testing.T, l net.Listener, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + l.Addr().String()
}

// lineLogger returns a writer whose lines go to the test log (shown when
// the test fails or with -v), closed when the test ends.
func lineLogger(t *testing.T, name string) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Logf("%s: %s", name, sc.Text())
		}
	}()
	t.Cleanup(func() {
		_ = pw.Close()
		wg.Wait()
		_ = pr.Close()
	})
	return pw
}
