package stacktest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/devstack"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
)

// User is the operator the trusted proxy's header names in every request
// Web sends.
const User = "alice"

// Options say how a stack is built; the zero value is a healthy VM 102
// behind the simulated Proxmox host, presence off (a test about presence
// starts the keyholder with its variables), and an API double with an
// empty script.
type Options struct {
	// PVE is devstack.PVESimulated, PVEBlackholed or PVEDown.
	PVE string
	// DevvmDown closes the devvm's port.
	DevvmDown bool
	// Script is the API double's turns.
	Script []apidouble.Turn
	// RunAs runs both binaries as this user (tests running as root).
	RunAs *syscall.Credential
	// Path is the binaries' PATH ("" = the image's, /usr/local/bin:/usr/bin:/bin).
	Path string
}

// Stack is a devstack.Stack owned by one test.
type Stack struct {
	*devstack.Stack
	// Double is the Messages API double the claude CLI talks to.
	Double *apidouble.Server
	// BinDir holds the keyholder and web binaries.
	BinDir string
	t      testing.TB
}

// New builds the stack's hosts and files (no binary runs yet) and removes
// everything when the test ends; a binary that had to be killed at the
// end fails the test.
func New(t testing.TB, o Options) *Stack {
	t.Helper()
	bin := testbin.Build(t, "breakglass/cmd/keyholder", "breakglass/cmd/web")
	if o.RunAs != nil {
		// The binaries run as another user: the folder must let it in.
		require.NoError(t, os.Chmod(bin, 0o755))
	}
	double, err := apidouble.New(apidouble.Config{Script: o.Script})
	require.NoError(t, err)
	t.Cleanup(double.Close)
	path := o.Path
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	s, err := devstack.New(devstack.Config{
		Listen:     "127.0.0.1:0",
		BinDir:     bin,
		ClaudeBin:  testbin.Claude(t),
		Environ:    []string{"PATH=" + path},
		APIBaseURL: double.URL(),
		PVE:        o.PVE,
		DevvmDown:  o.DevvmDown,
		// Tests about presence start the keyholder with its variables.
		Presence: "off",
		RunAs:    o.RunAs,
		WebEnv: []string{
			"ANTHROPIC_API_KEY=test-key",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
			"DISABLE_TELEMETRY=1",
			"DISABLE_AUTOUPDATER=1",
			"LANG=C.UTF-8",
			// Nobody answers permission questions unless a test says so.
			"BREAKGLASS_AGENT_MODE=autopilot",
		},
		// A binary that needs SIGKILL fails the test; under -race on a
		// loaded machine a clean stop can take seconds.
		StopGrace: 30 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	return &Stack{Stack: s, Double: double, BinDir: bin, t: t}
}

// ready bounds a binary's start.
const ready = time.Minute

// StartKeyholder starts a keyholder with the stack's environment plus
// extra KEY=value entries and returns once it serves.
func (s *Stack) StartKeyholder(t testing.TB, extra ...string) *devstack.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ready)
	defer cancel()
	p, err := s.Stack.StartKeyholder(ctx, extra...)
	require.NoError(t, err)
	return p
}

// StartWeb starts a web with the stack's environment plus extra KEY=value
// entries and returns once it serves.
func (s *Stack) StartWeb(t testing.TB, extra ...string) *Web {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ready)
	defer cancel()
	w, err := s.Stack.StartWeb(ctx, extra...)
	require.NoError(t, err)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &Web{Web: w, Client: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// Web is a running web and a client that signs in as User.
type Web struct {
	*devstack.Web
	Client *http.Client
}

// DoErr sends a request as User (the trusted proxy's header) and returns
// the status and body; err is a transport failure.
func (w *Web) DoErr(method, path, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.URL+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Authentik-Username", User)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Do is DoErr that fails the test on a transport failure.
func (w *Web) Do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	code, b, err := w.DoErr(method, path, body)
	require.NoError(t, err, "%s %s", method, path)
	return code, b
}

// NewSession creates a session and returns its id.
func (w *Web) NewSession(t testing.TB) string {
	t.Helper()
	code, body := w.Do(t, http.MethodPost, "/api/sessions", "{}")
	require.Equal(t, http.StatusCreated, code, body)
	var info struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	return info.ID
}

// Prompt starts a turn.
func (w *Web) Prompt(t testing.TB, id, text string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"text": text})
	code, body := w.Do(t, http.MethodPost, "/api/sessions/"+id+"/prompt", string(b))
	require.Equal(t, http.StatusAccepted, code, body)
}

// AttachErr opens session id's stream after event last, as User.
func (w *Web) AttachErr(ctx context.Context, client *http.Client, id string, last int64) (*webtest.Stream, error) {
	return webtest.Attach(ctx, client, w.URL, User, id, last)
}

// Attach opens session id's stream after event last; it is closed when
// the test ends.
func (w *Web) Attach(t testing.TB, ctx context.Context, id string, last int64) *webtest.Stream {
	t.Helper()
	s, err := w.AttachErr(ctx, w.Client, id, last)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// Turn reads one whole turn of session id after event last, bounded by d.
func (w *Web) Turn(t testing.TB, id string, last int64, d time.Duration) []webtest.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Attach(t, ctx, id, last).UntilDone(t)
}

// History reads every event of session id, from the first to the last the
// web lists for it.
func (w *Web) History(t testing.TB, id string) []webtest.Event {
	t.Helper()
	code, body := w.Do(t, http.MethodGet, "/api/sessions/"+id, "")
	require.Equal(t, http.StatusOK, code, body)
	var info struct {
		LastEventID int64 `json:"last_event_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := w.AttachErr(ctx, w.Client, id, 0)
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

// Metric reads one unlabelled sample from the web's metrics listener.
func (w *Web) Metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := w.Client.Get(w.MetricsURL)
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
