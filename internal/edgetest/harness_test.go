package edgetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/devstack"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// stopTimeout bounds how long a child may take to stop on SIGTERM.
const stopTimeout = 20 * time.Second

// child is a process the test started, with its output kept for failures.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	out    bytes.Buffer
	lines  chan string
}

func (c *child) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// start runs cmd as a child of the test: its stderr lines go to lines (for
// the caller to wait on) and into the kept output; Cleanup stops it with
// SIGTERM, and a child that does not stop is killed and fails the test.
func start(t *testing.T, name string, cmd *exec.Cmd) *child {
	t.Helper()
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), lines: make(chan string, 256)}
	cmd.Stdout = c
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		defer close(c.lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			_, _ = c.Write(append(sc.Bytes(), '\n'))
			select {
			case c.lines <- sc.Text():
			default: // nobody is waiting for lines any more
			}
		}
	}()
	go func() {
		reading.Wait()
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("%s's output:\n%s", name, c.output())
			}
		}()
		select {
		case <-c.exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-c.exited
			t.Errorf("%s did not stop on SIGTERM:\n%s", name, c.output())
		}
	})
	return c
}

// web is a running web binary and its listener's host:port.
type web struct {
	*stacktest.Web
	addr string
}

// startWeb runs the real web (internal/testing/stacktest, both hosts down)
// with trusted as its BREAKGLASS_TRUSTED_PROXIES ("" is the default: the
// header is off), a bearer token, and a one-second stream keepalive. No
// claude CLI is installed, so a turn ends at once with an error event;
// nothing here needs one.
func startWeb(t *testing.T, trusted, token string) *web {
	t.Helper()
	s := stacktest.New(t, stacktest.Options{PVE: devstack.PVEDown, DevvmDown: true})
	w := s.StartWeb(t,
		"BREAKGLASS_CLAUDE_BIN="+filepath.Join(s.Dir, "no-claude-here"),
		"BREAKGLASS_SSE_KEEPALIVE_SECONDS=1",
		"BREAKGLASS_TRUSTED_PROXIES="+trusted,
		"API_BEARER_TOKEN="+token)
	return &web{Web: w, addr: strings.TrimPrefix(w.URL, "http://")}
}

// authDouble stands in for authentik's outpost: its nginx endpoint answers
// 200 with X-authentik-username for a signed-in browser (the name is in the
// authentik_session cookie), 200 with no name for the cookie "nameless",
// and 401 otherwise. Like the outpost, it never reflects a request header.
func authDouble(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /outpost.goauthentik.io/auth/nginx", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("authentik_session")
		switch {
		case err != nil || r.Header.Get("X-Original-URL") == "":
			w.WriteHeader(http.StatusUnauthorized)
		case c.Value == "nameless":
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("X-authentik-username", c.Value)
			w.WriteHeader(http.StatusOK)
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// nginxConf is the proxy: forwardAuth is configured the way ingress-nginx
// renders the annotations of deploy/k8s/components/authentik (auth-url,
// auth-signin, auth-response-headers: X-authentik-username); passThrough
// is a plain reverse proxy; buffered is passThrough with the web's
// X-Accel-Buffering ignored (the control that shows the stream test can
// fail). Proxy buffering is nginx's default (on) everywhere, and all three
// compress text/event-stream.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`
daemon off;
{{.User}}
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log info;
events {
    worker_connections 256;
}
http {
    access_log {{.Dir}}/access.log;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    proxy_http_version 1.1;
    proxy_read_timeout 120s;
    # A proxy that compresses text, the stream included: with buffering,
    # the gzip filter holds everything back until the response ends.
    gzip on;
    gzip_types text/event-stream;

    server {
        listen {{.ForwardAuth}};

        # auth-url: the subrequest gets the client's headers (never its
        # body), the original URL and method.
        location = /_external-auth {
            internal;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Proto "";
            proxy_set_header Host {{.AuthHost}};
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Sent-From "nginx-ingress-controller";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Auth-Request-Redirect $request_uri;
            proxy_buffering off;
            proxy_pass {{.AuthURL}};
        }

        # auth-signin: a 401 from the outpost sends the browser to sign in.
        location @authsignin {
            internal;
            add_header Set-Cookie $auth_cookie;
            return 302 http://$http_host/outpost.goauthentik.io/start?rd=$scheme://$http_host$request_uri;
        }

        location / {
            auth_request /_external-auth;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
            # auth-response-headers: X-authentik-username
            auth_request_set $authHeader0 $upstream_http_x_authentik_username;
            proxy_set_header 'X-authentik-username' $authHeader0;
            error_page 401 = @authsignin;

            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_pass http://{{.ForwardAuthWeb}};
        }
    }

    server {
        listen {{.PassThrough}};
        location / {
            proxy_set_header Host $host;
            proxy_pass http://{{.PassThroughWeb}};
        }
    }

    server {
        listen {{.Buffered}};
        location / {
            proxy_ignore_headers X-Accel-Buffering;
            proxy_set_header Host $host;
            proxy_pass http://{{.PassThroughWeb}};
        }
    }
}
`))

// proxy is a running nginx and the addresses of its three servers.
type proxy struct {
	*child
	forwardAuth, passThrough, buffered string
}

// nginxBin is Debian's nginx (make deps-apt installs it).
func nginxBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	t.Fatal("nginx is missing: run make deps-apt (make test installs it)")
	return ""
}

// startNginx runs nginx (master and one worker) in the foreground with its own prefix and
// configuration in a temporary folder. Its listening sockets are opened here
// on 127.0.0.1:0 and inherited (the NGINX variable, as in nginx's binary
// upgrade), so no port is guessed; the test stops it.
func startNginx(t *testing.T, auth *httptest.Server, forwardAuthWeb, passThroughWeb *web) *proxy {
	t.Helper()
	dir := t.TempDir()
	var files []*os.File
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		f, err := ln.(*net.TCPListener).File()
		require.NoError(t, err)
		require.NoError(t, ln.Close())
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	// nginx run by root switches its worker to nobody, who cannot enter
	// the test's temporary folder (proxy_temp_path): keep root's worker
	// as root. (The master stays: nginx 1.22 with master_process off
	// crashes on inherited sockets.)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;"
	}
	var conf bytes.Buffer
	require.NoError(t, nginxConf.Execute(&conf, map[string]string{
		"Dir":            dir,
		"User":           user,
		"ForwardAuth":    addrs[0],
		"PassThrough":    addrs[1],
		"Buffered":       addrs[2],
		"AuthHost":       strings.TrimPrefix(auth.URL, "http://"),
		"AuthURL":        auth.URL + "/outpost.goauthentik.io/auth/nginx",
		"ForwardAuthWeb": forwardAuthWeb.addr,
		"PassThroughWeb": passThroughWeb.addr,
	}))
	confPath := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(confPath, conf.Bytes(), 0o600))

	bin := nginxBin(t)
	check := exec.Command(bin, "-t", "-q", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	out, err := check.CombinedOutput()
	require.NoError(t, err, "nginx -t: %s", out)

	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", confPath)
	// The inherited sockets are fds 3, 4, 5 in the child.
	cmd.ExtraFiles = files
	cmd.Env = []string{"NGINX=3;4;5;"}
	p := &proxy{child: start(t, "nginx", cmd), forwardAuth: addrs[0], passThrough: addrs[1], buffered: addrs[2]}
	// nginx has no ready line of its own on stderr; it serves as soon as
	// it has read its configuration. The listening sockets already accept
	// (the kernel queues connections), so a request made now waits for it.
	return p
}

// request sends one request to a proxy server with the given headers
// (a header given twice is sent twice) and returns the status and body.
func request(t *testing.T, method, addr, path string, header http.Header, body string) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b.String(), resp.Header
}

// stream attaches to a session's event stream through a proxy server and
// delivers its lines until the test ends; the first line is the response's
// status ("HTTP 200"). Everything runs in the background, so a proxy that
// holds the response back blocks nothing but the lines.
func stream(t *testing.T, addr, session string, header http.Header) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/sessions/"+session+"/stream", nil)
	require.NoError(t, err)
	req.Header = header.Clone()
	req.Header.Set("Accept", "text/event-stream")
	client := &http.Client{Transport: &http.Transport{}}
	lines := make(chan string, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		send := func(line string) bool {
			select {
			case lines <- line:
				return true
			case <-ctx.Done():
				return false
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			send("error: " + err.Error())
			return
		}
		defer resp.Body.Close()
		if !send(fmt.Sprintf("HTTP %d", resp.StatusCode)) {
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if !send(sc.Text()) {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		client.CloseIdleConnections()
	})
	return lines
}

// attached waits for the stream's status line and requires a 200.
func attached(t *testing.T, lines <-chan string) {
	t.Helper()
	select {
	case first := <-lines:
		require.Equal(t, "HTTP 200", first)
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the stream request in 30s")
	}
}
