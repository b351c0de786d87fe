package pvecmd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"breakglass/internal/api/wire"
	"breakglass/internal/power"
	"breakglass/internal/turntoken"
	"breakglass/internal/verbs"
)

// The environment the web gives the agent's turn (turntoken.Set.TurnEnv builds
// it); the caller of Main reads it.
const (
	// EnvURL is the web's base URL as seen from the agent, e.g.
	// http://127.0.0.1:8080.
	EnvURL = turntoken.EnvURL
	// EnvToken is the turn's token.
	EnvToken = turntoken.EnvToken
	// EnvSession is the turn's session id (optional; when set, the web
	// checks it is the token's).
	EnvSession = turntoken.EnvSession
	// EnvWait is how many seconds pve waits for an answer (optional,
	// default DefaultWait). It must cover an approval plus the verb.
	EnvWait = turntoken.EnvWait
)

// DefaultWait covers the default approval wait (5 min) plus the keyholder's
// default verb timeout (2 min) with room to spare.
const DefaultWait = 10 * time.Minute

// maxWait bounds EnvWait.
const maxWait = 2 * time.Hour

// maxAnswer bounds the web's answer: the keyholder caps output at 1 MiB,
// which JSON escaping can grow, and a screenshot at 8 MiB, which base64
// grows by a third.
const maxAnswer = 12 << 20

// Exit codes of pve when the verb did not run. When it ran, pve exits with
// the remote exit code (clamped to 0..255), which may coincide with these:
// the message on stderr tells them apart.
const (
	ExitUsage         = 2  // not exactly one verb
	ExitConfig        = 3  // not inside a turn: no URL or token in the environment
	ExitRefused       = 10 // the policy refuses the agent's mutating verbs
	ExitDenied        = 11 // the operator denied the approval
	ExitExpired       = 12 // nobody answered the approval in time
	ExitTimeout       = 13 // the verb, or the wait for the web, timed out
	ExitKeyholderDown = 14 // the keyholder did not answer
	ExitTokenRejected = 15 // the turn token was refused
	ExitBusy          = 16 // another mutating verb is running
	ExitSSH           = 17 // the keyholder could not reach the Proxmox host
	ExitWeb           = 18 // the web could not be reached or answered oddly
)

// Main runs `pve` with args (without the program name) and returns its exit
// status. getenv reads the environment variables named above.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	v, argv, code := parseArgs(args, stderr)
	if code != 0 {
		return code
	}
	verb := string(v.Name)

	base, token := getenv(EnvURL), getenv(EnvToken)
	if base == "" || token == "" {
		fmt.Fprintf(stderr, "pve: %s and %s are not set: pve works only inside a breakglass turn\n", EnvURL, EnvToken)
		return ExitConfig
	}
	u, err := url.Parse(base)
	// unix:///path/pve.sock is the web's agent socket (how a turn reaches
	// it); http(s) URLs remain for tests and tools.
	socket := ""
	switch {
	case err == nil && u.Scheme == "unix" && u.Host == "" && filepath.IsAbs(u.Path) && u.RawQuery == "":
		socket, u = u.Path, &url.URL{Scheme: "http", Host: "breakglass"}
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
		fmt.Fprintf(stderr, "pve: %s must be unix:///<socket> or an http(s) URL with a host, like http://127.0.0.1:8080\n", EnvURL)
		return ExitConfig
	}
	wait := DefaultWait
	if s := getenv(EnvWait); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > maxWait {
			fmt.Fprintf(stderr, "pve: %s=%q: must be a whole number of seconds between 1 and %d\n", EnvWait, s, int(maxWait.Seconds()))
			return ExitConfig
		}
		wait = time.Duration(n) * time.Second
	}
	var body []byte
	if sid := getenv(EnvSession); sid != "" || argv != nil {
		body, _ = json.Marshal(power.RunRequest{SessionID: sid, Args: argv})
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	endpoint := strings.TrimRight(u.String(), "/") + wire.AgentVerbPrefix + verb
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "pve: build request: %v\n", err)
		return ExitConfig
	}
	req.Header.Set(wire.TokenHeader, token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if v.Mutating {
		fmt.Fprintf(stderr, "pve: asking for %s; it may wait for the operator's approval\n", verb)
		if argv != nil {
			fmt.Fprintf(stderr, "pve: the operator sees the argv %q\n", argv)
		}
	}
	dial := (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	if socket != "" {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "unix", socket)
		}
	}
	transport := &http.Transport{
		Proxy:                 nil, // the token goes to the web, never to a proxy
		DialContext:           dial,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: wait,
		DisableKeepAlives:     true,
	}
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer transport.CloseIdleConnections()

	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "pve: %s: timed out after %v waiting for breakglass; the verb may still have run: check with `pve status`\n", verb, wait)
			return ExitTimeout
		}
		where := u.Redacted()
		if socket != "" {
			where = socket
		}
		fmt.Fprintf(stderr, "pve: cannot reach breakglass at %s: %v\n", where, errors.Unwrap(err))
		return ExitWeb
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "pve: %s: timed out after %v reading the answer\n", verb, wait)
			return ExitTimeout
		}
		fmt.Fprintf(stderr, "pve: read the answer: %v\n", err)
		return ExitWeb
	}
	if len(raw) > maxAnswer {
		fmt.Fprintf(stderr, "pve: the answer is larger than %d bytes\n", maxAnswer)
		return ExitWeb
	}
	if resp.StatusCode == http.StatusOK {
		return printResult(verb, raw, stdout, stderr)
	}
	return printRefusal(verb, resp.StatusCode, raw, stderr)
}

// printResult prints a verb that ran and returns its exit code.
func printResult(verb string, raw []byte, stdout, stderr io.Writer) int {
	var res power.Result
	if err := json.Unmarshal(raw, &res); err != nil || res.Verb != verb {
		fmt.Fprintf(stderr, "pve: %s: unexpected answer from breakglass\n", verb)
		return ExitWeb
	}
	if res.ContentType != "" {
		return saveImage(verb, res, stdout, stderr)
	}
	io.WriteString(stdout, res.Output)
	if res.Output != "" && !strings.HasSuffix(res.Output, "\n") {
		io.WriteString(stdout, "\n")
	}
	if res.Truncated {
		fmt.Fprintf(stderr, "pve: %s: output truncated by the keyholder (1 MiB cap)\n", verb)
	}
	if res.ExitCode == 0 {
		return 0
	}
	fmt.Fprintf(stderr, "pve: %s exited with status %d on the Proxmox host\n", verb, res.ExitCode)
	if res.ExitCode < 0 || res.ExitCode > 255 {
		return 1
	}
	return res.ExitCode
}

// printRefusal explains why the verb did not run and returns pve's code.
func printRefusal(verb string, status int, raw []byte, stderr io.Writer) int {
	var b wire.ErrorBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Code == "" {
		fmt.Fprintf(stderr, "pve: %s: breakglass answered %d %s\n", verb, status, http.StatusText(status))
		return ExitWeb
	}
	detail := oneLine(b.Error)
	switch b.Code {
	case wire.CodeToken:
		fmt.Fprintf(stderr, "pve: turn token rejected: pve works only while the turn that started it runs\n")
		return ExitTokenRejected
	case wire.CodeRefused:
		fmt.Fprintf(stderr, "pve: %s refused: the agent may not run mutating verbs here (policy deny); ask the operator to run it from the VM controls\n", verb)
		return ExitRefused
	case wire.CodeDenied:
		fmt.Fprintf(stderr, "pve: %s denied by the operator; it did not run\n", verb)
		return ExitDenied
	case wire.CodeExpired:
		fmt.Fprintf(stderr, "pve: %s: approval expired, the operator did not answer in time; it did not run\n", verb)
		return ExitExpired
	case wire.CodeTimeout:
		fmt.Fprintf(stderr, "pve: %s timed out on the Proxmox host: %s\n", verb, detail)
		return ExitTimeout
	case wire.CodeKeyholderDown:
		fmt.Fprintf(stderr, "pve: keyholder down: %s did not run (%s)\n", verb, detail)
		return ExitKeyholderDown
	case wire.CodeTooManyPending:
		fmt.Fprintf(stderr, "pve: %s refused: too many of your verbs already wait for the operator's answer\n", verb)
		return ExitBusy
	case wire.CodeBusy:
		fmt.Fprintf(stderr, "pve: %s refused: another mutating verb is running; try again when it ends\n", verb)
		return ExitBusy
	case wire.CodeSSH:
		fmt.Fprintf(stderr, "pve: %s: the keyholder could not run it on the Proxmox host: %s\n", verb, detail)
		return ExitSSH
	case wire.CodeInvalidVerb:
		fmt.Fprintf(stderr, "pve: %s\n", detail)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "pve: %s: breakglass answered %d: %s\n", verb, status, detail)
	return ExitWeb
}

// oneLine keeps a server message to one bounded line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func usage(w io.Writer, why string) {
	var b strings.Builder
	fmt.Fprintf(&b, "pve: %s\n", why)
	b.WriteString("usage: pve <verb>   (exactly one verb, no options)\n")
	b.WriteString("       pve guest-exec -- <command> <arg>…   (the one verb with arguments: an argv, no shell)\n")
	for _, v := range verbs.All() {
		kind := "read-only"
		if v.Mutating {
			kind = "mutating, may wait for the operator"
		}
		fmt.Fprintf(&b, "  %-10s %s [%s]\n", v.Name, v.Summary, kind)
	}
	io.WriteString(w, b.String())
}

// parseArgs reads `pve <verb>` or `pve guest-exec -- <argv…>`; a non-zero
// code means a usage error was printed.
func parseArgs(args []string, stderr io.Writer) (verbs.Verb, []string, int) {
	if len(args) == 0 {
		usage(stderr, "expected a verb")
		return verbs.Verb{}, nil, ExitUsage
	}
	v, err := verbs.Parse(args[0])
	if err != nil {
		usage(stderr, err.Error())
		return verbs.Verb{}, nil, ExitUsage
	}
	if !v.TakesArgs {
		if len(args) != 1 {
			usage(stderr, fmt.Sprintf("%s takes no arguments, got %d", v.Name, len(args)-1))
			return verbs.Verb{}, nil, ExitUsage
		}
		return v, nil, 0
	}
	if len(args) < 3 || args[1] != "--" {
		usage(stderr, fmt.Sprintf("%s takes its command after --, one argument per word, no shell: pve %s -- systemctl restart ssh", v.Name, v.Name))
		return verbs.Verb{}, nil, ExitUsage
	}
	argv := args[2:]
	if err := verbs.ValidateArgs(argv); err != nil {
		usage(stderr, err.Error())
		return verbs.Verb{}, nil, ExitUsage
	}
	return v, argv, 0
}

// maxImages bounds the pictures pve keeps in one folder.
const maxImages = 1000

// saveImage writes a binary answer (screenshot's PNG) into the current
// folder, the agent's work folder, and prints its path so the agent can
// open it with its Read tool.
func saveImage(verb string, res power.Result, stdout, stderr io.Writer) int {
	b, err := base64.StdEncoding.DecodeString(res.OutputBase64)
	if err != nil || res.ContentType != verbs.ContentTypePNG {
		fmt.Fprintf(stderr, "pve: %s: unexpected answer from breakglass\n", verb)
		return ExitWeb
	}
	dir, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "pve: %s: no working folder to save the picture in: %v\n", verb, err)
		return ExitWeb
	}
	// screenshot-1.png, screenshot-2.png, …: short names, never one
	// overwritten.
	var name string
	var f *os.File
	for n := 1; n <= maxImages; n++ {
		name = filepath.Join(dir, verb+"-"+strconv.Itoa(n)+".png")
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pve: %s: save the picture: %v\n", verb, err)
		return ExitWeb
	}
	fmt.Fprintln(stdout, name)
	fmt.Fprintf(stderr, "pve: %s: the VM's screen, %d bytes of PNG, saved at the path above: open it with the Read tool to see it\n", verb, len(b))
	return 0
}
