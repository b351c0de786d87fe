package claude

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// PinnedVersion is the claude CLI version this package is written and
// tested against.
const PinnedVersion = "2.1.328"

// InstallHint tells the operator how to install the CLI.
const InstallHint = "install it with `npm install -g @anthropic-ai/claude-code@" + PinnedVersion + "` or point BREAKGLASS_CLAUDE_BIN at it"

// Defaults of Config.
const (
	DefaultBinary      = "claude"
	DefaultAgent       = "breakglass"
	DefaultModel       = "sonnet"
	DefaultInitTimeout = 60 * time.Second
	DefaultRetryCutoff = 300 * time.Second
	DefaultKillGrace   = 5 * time.Second
	DefaultMaxLine     = 16 << 20
	DefaultMaxStderr   = 16 << 10
)

// Tools is the fixed tool list of every turn (--tools and --allowedTools).
const Tools = "Bash,Read,Grep,Glob"

// Errors of New and Run. Run reports them as error events too.
var (
	// ErrInvalidSessionID: a turn's session id is not a UUID.
	ErrInvalidSessionID = errors.New("session id is not a UUID")
	// ErrNotInstalled: the claude binary was not found.
	ErrNotInstalled = errors.New("claude CLI not found")
	// ErrConfig: the Config is not usable.
	ErrConfig = errors.New("invalid claude runner config")
)

// Config configures a Runner. The zero value is safe: defaults fill every
// empty field except Home, which New requires.
type Config struct {
	// Binary is the claude CLI: a path, or a name looked up in the PATH of
	// Environ. Default "claude".
	Binary string
	// Agent is the --agent name (HOME/.claude/agents/<Agent>.md). Default
	// "breakglass".
	Agent string
	// Model is the --model. Default "sonnet".
	Model string
	// Home is the agent's HOME (claude's session store lives under it). It
	// must be an absolute path.
	Home string
	// BinDir, if set, is put first on the child's PATH (the agent's `ssh`
	// and `pve`; see package agenthome).
	BinDir string
	// MaxBudgetUSD adds --max-budget-usd when above zero.
	MaxBudgetUSD float64
	// Environ is the ambient environment (KEY=value) from which the child's
	// is filtered: only the allowlist of AllowedEnv passes.
	Environ []string
	// Logger gets subprocess and parsing diagnostics; nil discards.
	Logger hclog.Logger
	// LineObserved, if set, is called once per stdout line with its kind
	// (for breakglass_stream_lines_total{kind}).
	LineObserved func(LineKind)
	// CostObserved, if set, is called with a result's total_cost_usd (for
	// breakglass_agent_cost_usd_total).
	CostObserved func(usd float64)
	// Started, if set, is called with the process group id of each claude
	// process when it starts (for logs and tests).
	Started func(pgid int)
	// InitTimeout ends a turn that printed no system/init. Default 60 s.
	InitTimeout time.Duration
	// RetryCutoff ends a turn whose API calls are still being retried this
	// long after the first retry. Default 300 s.
	RetryCutoff time.Duration
	// KillGrace is the time between SIGINT and SIGKILL. Default 5 s.
	KillGrace time.Duration
	// MaxLine bounds one stdout line; a longer line is skipped and counted
	// invalid. Default 16 MiB.
	MaxLine int
	// MaxStderr bounds the stderr kept (its tail). Default 16 KiB.
	MaxStderr int
}

// Runner runs claude turns. It is safe for concurrent use; the caller
// serialises turns of one session.
type Runner struct {
	cfg Config
	log hclog.Logger
	env []string // filtered ambient environment, without HOME
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Runner, error) {
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.Agent == "" {
		cfg.Agent = DefaultAgent
	}
	if cfg.Model == "" {
		cfg.Model = DefaultModel
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = DefaultInitTimeout
	}
	if cfg.RetryCutoff <= 0 {
		cfg.RetryCutoff = DefaultRetryCutoff
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = DefaultMaxLine
	}
	if cfg.MaxStderr <= 0 {
		cfg.MaxStderr = DefaultMaxStderr
	}
	switch {
	case cfg.Home == "" || !filepath.IsAbs(cfg.Home):
		return nil, fmt.Errorf("%w: Home must be an absolute path, got %q", ErrConfig, cfg.Home)
	case cfg.BinDir != "" && !filepath.IsAbs(cfg.BinDir):
		return nil, fmt.Errorf("%w: BinDir must be an absolute path, got %q", ErrConfig, cfg.BinDir)
	case !safeName.MatchString(cfg.Agent):
		return nil, fmt.Errorf("%w: agent name %q", ErrConfig, cfg.Agent)
	case !safeName.MatchString(cfg.Model):
		return nil, fmt.Errorf("%w: model name %q", ErrConfig, cfg.Model)
	case cfg.MaxBudgetUSD < 0:
		return nil, fmt.Errorf("%w: negative budget", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Runner{cfg: cfg, log: log.Named("claude"), env: FilterEnv(cfg.Environ)}, nil
}

// safeName is what an agent or model name may look like: it becomes one
// argv element and, for the agent, a file name.
var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-\[\]]{0,127}$`)

// allowedEnv are the variables passed through by name; ANTHROPIC_* passes
// by prefix. HOME is always the configured one.
var allowedEnv = map[string]bool{
	"PATH": true, "LANG": true, "TZ": true, "HTTPS_PROXY": true, "NO_PROXY": true,
	"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": true, "DISABLE_TELEMETRY": true, "DISABLE_AUTOUPDATER": true,
}

// AllowedEnv reports whether the variable key may pass into claude's
// environment. CLAUDECODE and every other CLAUDE_CODE_* except the one
// listed never pass.
func AllowedEnv(key string) bool {
	return allowedEnv[key] || (strings.HasPrefix(key, "ANTHROPIC_") && len(key) > len("ANTHROPIC_"))
}

// FilterEnv keeps the allowlisted entries of environ (KEY=value), the last
// one winning for a repeated key, in their first order.
func FilterEnv(environ []string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !AllowedEnv(k) {
			continue
		}
		if i, seen := idx[k]; seen {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// defaultPath is the child's PATH when the ambient environment has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// childEnv builds the environment of one turn: the filtered ambient one,
// HOME, PATH with BinDir first, then the turn's own entries (which may not
// replace HOME or PATH, nor set CLAUDECODE).
func (r *Runner) childEnv(t Turn) []string {
	path := defaultPath
	var env []string
	for _, kv := range r.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
			continue
		}
		env = append(env, kv)
	}
	if r.cfg.BinDir != "" {
		path = r.cfg.BinDir + string(os.PathListSeparator) + path
	}
	env = append(env, "HOME="+r.cfg.Home, "PATH="+path)
	for _, kv := range t.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || k == "HOME" || k == "PATH" || k == "CLAUDECODE" {
			r.log.Warn("turn environment entry refused", "key", k)
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Args returns claude's argv (without the program name) for a turn. The
// prompt comes last, after "--", so a prompt that starts with "-" is text,
// never an option.
func (r *Runner) Args(t Turn, resume bool) []string {
	idFlag := "--session-id"
	if resume {
		idFlag = "--resume"
	}
	args := []string{
		"-p",
		idFlag, t.SessionID,
		"--output-format", "stream-json",
		"--verbose",
		"--include-partial-messages",
		"--agent", r.cfg.Agent,
		"--model", r.cfg.Model,
		"--tools", Tools,
		"--allowedTools", Tools,
	}
	if r.cfg.MaxBudgetUSD > 0 {
		args = append(args, "--max-budget-usd", strconv.FormatFloat(r.cfg.MaxBudgetUSD, 'f', -1, 64))
	}
	return append(args, "--", t.Prompt)
}

// binary resolves the CLI: a name is looked up in the child's PATH.
func (r *Runner) binary(env []string) (string, error) {
	b := r.cfg.Binary
	if strings.ContainsRune(b, '/') {
		if isExecutable(b) {
			return b, nil
		}
		return "", fmt.Errorf("%w at %s: %s", ErrNotInstalled, b, InstallHint)
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, b); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no %q on PATH: %s", ErrNotInstalled, b, InstallHint)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Run runs one turn and emits its events (every one except user and done,
// which the caller emits), in order, from the calling goroutine. It returns
// when claude, every process of its group, and every process that still
// carries the turn's MarkVar (a tool's background job, an ssh) are gone.
//
// When claude answers "No conversation found" to --resume or "already in
// use" to --session-id, Run retries once with the other flag; the failed
// attempt's events are not emitted.
func (r *Runner) Run(ctx context.Context, t Turn, emit func(event.Event)) Outcome {
	fail := func(err error) Outcome {
		emit(event.New(event.Error, event.ErrorData{Message: err.Error()}))
		return Outcome{Outcome: event.OutcomeError, ExitCode: -1}
	}
	if !uuid.Valid(t.SessionID) {
		return fail(fmt.Errorf("run claude: %w: %q", ErrInvalidSessionID, capString(t.SessionID, 64)))
	}
	if t.Dir == "" {
		return fail(errors.New("run claude: the turn has no directory"))
	}
	if !filepath.IsAbs(t.Dir) {
		abs, err := filepath.Abs(t.Dir)
		if err != nil {
			return fail(fmt.Errorf("run claude: turn directory: %w", err))
		}
		t.Dir = abs
	}
	env := r.childEnv(t)
	bin, err := r.binary(env)
	if err != nil {
		return fail(err)
	}
	a := r.attempt(ctx, bin, env, t, t.Resume, emit)
	if a.swap {
		r.log.Info("retrying with the other session flag", "session", t.SessionID, "resume", !t.Resume)
		a = r.attempt(ctx, bin, env, t, !t.Resume, emit)
	}
	if a.swap {
		a.flush(emit)
		emit(event.New(event.Error, event.ErrorData{Message: "claude refused both --session-id and --resume for this session: " + a.stderrTail()}))
		return Outcome{Outcome: event.OutcomeError, ExitCode: a.exitCode}
	}
	return a.outcome
}

// stopReason says why Run ended a turn itself.
type stopReason int

const (
	stopNone stopReason = iota
	stopCancel
	stopTimeout
	stopNoInit
	stopRetries
)

// attemptResult is one claude process's end.
type attemptResult struct {
	outcome  Outcome
	exitCode int
	// swap: claude refused the session flag; retry with the other one.
	swap bool
	// held are the events held back before system/init (dropped on swap).
	held   []event.Event
	stderr *tailBuffer
}

func (a *attemptResult) flush(emit func(event.Event)) {
	for _, e := range a.held {
		emit(e)
	}
	a.held = nil
}

func (a *attemptResult) stderrTail() string {
	return briefly(a.stderr.String())
}

// briefly keeps the last lines of s, at most 1 KiB, on one line each.
func briefly(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1024 {
		s = s[len(s)-1024:]
		for len(s) > 0 && !utfStart(s[0]) {
			s = s[1:]
		}
		s = "…" + s
	}
	return s
}

func utfStart(b byte) bool { return b&0xC0 != 0x80 }

// attempt runs one claude process to its end.
func (r *Runner) attempt(ctx context.Context, bin string, env []string, t Turn, resume bool, emit func(event.Event)) attemptResult {
	res := attemptResult{stderr: &tailBuffer{max: r.cfg.MaxStderr}, exitCode: -1}
	errorOut := func(msg string) {
		res.flush(emit)
		emit(event.New(event.Error, event.ErrorData{Message: msg}))
	}
	if ctx.Err() != nil {
		res.outcome = r.stoppedOutcome(ctx, -1)
		if res.outcome.Outcome == event.OutcomeTimeout {
			errorOut("the turn reached its time limit before claude started")
		}
		return res
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		errorOut(fmt.Sprintf("run claude: stdout pipe: %v", err))
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: -1}
		return res
	}
	er, ew, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		errorOut(fmt.Sprintf("run claude: stderr pipe: %v", err))
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: -1}
		return res
	}
	// Both pipes are ours (not exec's copying goroutines), so Wait returns
	// when claude exits even if a straggler still holds them.
	cmd := exec.Command(bin, r.Args(t, resume)...)
	cmd.Dir = t.Dir
	mark := newMark()
	cmd.Env = append(env[:len(env):len(env)], MarkVar+"="+mark)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = pw
	cmd.Stderr = ew
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := r.log.With("session", t.SessionID, "resume", resume)
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		er.Close()
		ew.Close()
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			errorOut(fmt.Sprintf("%v: %s", ErrNotInstalled, InstallHint))
		} else {
			errorOut(fmt.Sprintf("start claude: %v", err))
		}
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: -1}
		return res
	}
	pw.Close() // the child holds the write ends now
	ew.Close()
	pgid := cmd.Process.Pid
	log.Debug("claude started", "pid", pgid)
	if r.cfg.Started != nil {
		r.cfg.Started(pgid)
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		_, _ = io.Copy(res.stderr, er)
	}()

	// The reader goroutine owns pr; lines go to this goroutine, which alone
	// emits. It ends at EOF, which closing pr forces.
	lines := make(chan []byte, 64)
	readDone := make(chan struct{})
	var tooLong int
	go func() {
		defer close(readDone)
		defer close(lines)
		tooLong = readLines(pr, r.cfg.MaxLine, lines)
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	tr := NewTranslator()
	initTimer := time.NewTimer(r.cfg.InitTimeout)
	defer initTimer.Stop()
	var retryTimer *time.Timer
	var retryC <-chan time.Time
	lastAnswers := 0
	var lastRetryErr string
	stop := stopNone
	var killTimer *time.Timer
	var killC <-chan time.Time
	var drainTimer *time.Timer
	var drainC <-chan time.Time
	ctxDone := ctx.Done()
	exitedC := (<-chan struct{})(exited)
	invalidReported := false
	errorEmitted := false

	out := func(evs []event.Event) {
		for _, e := range evs {
			if e.Type == event.Error && stop != stopNone {
				// claude's own complaint about being interrupted (an
				// is_error result after SIGINT) is not news: the turn's
				// outcome says why it ended.
				log.Debug("error after stop not emitted", "data", string(e.Data))
				continue
			}
			if e.Type == event.Error {
				errorEmitted = true
			}
			if !tr.InitSeen() {
				res.held = append(res.held, e)
				continue
			}
			res.flush(emit)
			emit(e)
		}
	}
	beginStop := func(why stopReason) {
		if stop != stopNone {
			return
		}
		stop = why
		ctxDone = nil
		initTimer.Stop()
		if retryTimer != nil {
			retryTimer.Stop()
			retryC = nil
		}
		log.Info("stopping claude", "reason", why, "pgid", pgid)
		signalGroup(pgid, syscall.SIGINT)
		killTimer = time.NewTimer(r.cfg.KillGrace)
		killC = killTimer.C
	}
	defer func() {
		if killTimer != nil {
			killTimer.Stop()
		}
		if drainTimer != nil {
			drainTimer.Stop()
		}
	}()

	for lines != nil || exitedC != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			evs, kind := tr.Line(l)
			if r.cfg.LineObserved != nil {
				r.cfg.LineObserved(kind)
			}
			switch kind {
			case LineInvalid:
				log.Warn("claude printed a line that is not stream-json", "line", capString(string(l), 200))
				if !invalidReported {
					invalidReported = true
					evs = append(evs, event.New(event.Error, event.ErrorData{
						Message: fmt.Sprintf("claude printed output that is not stream-json: %q", capString(string(l), 200)),
					}))
				}
			case LineUnknown:
				log.Debug("unknown stream-json line ignored", "line", capString(string(l), 200))
			}
			for _, e := range evs {
				switch e.Type {
				case event.Result:
					if rd := tr.Result(); rd != nil && r.cfg.CostObserved != nil && rd.TotalCostUSD > 0 {
						r.cfg.CostObserved(rd.TotalCostUSD)
					}
				case event.Status:
					if isRetrying(e) && retryTimer == nil && stop == stopNone {
						retryTimer = time.NewTimer(r.cfg.RetryCutoff)
						retryC = retryTimer.C
					}
					if isRetrying(e) {
						lastRetryErr = retryErrorOf(e)
					}
				}
			}
			if tr.InitSeen() {
				initTimer.Stop()
			}
			if a := tr.Answers(); a != lastAnswers {
				lastAnswers = a
				if retryTimer != nil {
					retryTimer.Stop()
					retryTimer, retryC = nil, nil
				}
			}
			out(evs)
		case <-exitedC:
			exitedC = nil
			ctxDone = nil // it ended on its own: a late cancel changes nothing
			// claude is gone; its group may not be. Give the reader a
			// moment to drain what is buffered, then force EOF.
			killGroup(pgid)
			drainTimer = time.NewTimer(r.cfg.KillGrace)
			drainC = drainTimer.C
		case <-drainC:
			drainC = nil
			pr.Close()
		case <-ctxDone:
			if errors.Is(context.Cause(ctx), ErrCancelled) {
				beginStop(stopCancel)
			} else {
				beginStop(stopTimeout)
			}
		case <-initTimer.C:
			if !tr.InitSeen() {
				beginStop(stopNoInit)
			}
		case <-retryC:
			retryC = nil
			beginStop(stopRetries)
		case <-killC:
			killC = nil
			log.Warn("claude ignored SIGINT; killing its process group", "pgid", pgid)
			killGroup(pgid)
		}
	}
	<-readDone
	pr.Close()
	reapGroup(pgid)
	if n := killMarked("/proc", mark, r.cfg.KillGrace); n > 0 {
		log.Info("killed processes the turn left behind", "count", n)
	}
	select {
	case <-stderrDone:
	case <-time.After(r.cfg.KillGrace):
		log.Warn("claude's stderr still open after its process group ended; closing it")
	}
	er.Close()
	<-stderrDone
	if tooLong > 0 {
		log.Warn("claude printed lines over the limit; skipped", "count", tooLong, "limit", r.cfg.MaxLine)
		for range tooLong {
			if r.cfg.LineObserved != nil {
				r.cfg.LineObserved(LineInvalid)
			}
		}
	}

	res.exitCode = cmd.ProcessState.ExitCode()
	log.Debug("claude ended", "exit", res.exitCode, "wait", waitErr, "stop", stop, "lines", tr.Counts())

	switch stop {
	case stopCancel:
		res.flush(emit)
		res.outcome = Outcome{Outcome: event.OutcomeCancelled, ExitCode: res.exitCode}
		return res
	case stopTimeout:
		errorOut("the turn reached its time limit and was stopped")
		res.outcome = Outcome{Outcome: event.OutcomeTimeout, ExitCode: res.exitCode}
		return res
	case stopNoInit:
		errorOut(fmt.Sprintf("claude did not start within %v (no system/init line); stopped. %s", r.cfg.InitTimeout, briefly(res.stderr.String())))
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: res.exitCode}
		return res
	case stopRetries:
		msg := fmt.Sprintf("the Anthropic API is unreachable: claude was still retrying after %v; stopped", r.cfg.RetryCutoff)
		if lastRetryErr != "" {
			msg += " (last error: " + lastRetryErr + ")"
		}
		errorOut(msg)
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: res.exitCode}
		return res
	}

	// claude ended on its own.
	if !tr.InitSeen() && res.exitCode != 0 && refusedSessionFlag(resume, res.stderr.String(), res.held) {
		res.swap = true
		return res
	}
	rd := tr.Result()
	switch {
	case res.exitCode == 0 && rd != nil && !rd.IsError && !errorEmitted:
		res.flush(emit)
		res.outcome = Outcome{Outcome: event.OutcomeSuccess, ExitCode: 0}
	case errorEmitted:
		// The translator or the reader already said what went wrong.
		res.flush(emit)
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: res.exitCode}
	case res.exitCode != 0:
		msg := fmt.Sprintf("claude exited with status %d", res.exitCode)
		if res.exitCode < 0 {
			msg = "claude was killed: " + describeWait(waitErr)
		}
		if s := briefly(res.stderr.String()); s != "" {
			msg += ": " + s
		}
		errorOut(msg)
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: res.exitCode}
	default:
		errorOut("claude ended without a result")
		res.outcome = Outcome{Outcome: event.OutcomeError, ExitCode: res.exitCode}
	}
	return res
}

// stoppedOutcome is the outcome of a turn whose context ended.
func (r *Runner) stoppedOutcome(ctx context.Context, code int) Outcome {
	if errors.Is(context.Cause(ctx), ErrCancelled) {
		return Outcome{Outcome: event.OutcomeCancelled, ExitCode: code}
	}
	return Outcome{Outcome: event.OutcomeTimeout, ExitCode: code}
}

// refusedSessionFlag reports whether claude refused the session flag: "No
// conversation found" for --resume (on stderr, and in a result's errors),
// "already in use" for --session-id.
func refusedSessionFlag(resume bool, stderr string, held []event.Event) bool {
	phrase := "already in use"
	if resume {
		phrase = "No conversation found"
	}
	if strings.Contains(stderr, phrase) {
		return true
	}
	for _, e := range held {
		if strings.Contains(string(e.Data), phrase) {
			return true
		}
	}
	return false
}

func describeWait(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal().String()
		}
	}
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

func isRetrying(e event.Event) bool {
	return e.Type == event.Status && strings.Contains(string(e.Data), `"state":"`+event.StateRetrying+`"`)
}

func retryErrorOf(e event.Event) string {
	var d event.StatusData
	if err := jsonUnmarshal(e.Data, &d); err != nil {
		return ""
	}
	return d.Error
}

// readLines sends each line of rd (without its newline) to lines until EOF
// or a read error. Lines longer than max are skipped; it returns how many.
func readLines(rd io.Reader, max int, lines chan<- []byte) (tooLong int) {
	br := bufio.NewReaderSize(rd, 64<<10)
	var buf []byte
	skipping := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			complete := chunk[len(chunk)-1] == '\n'
			if !skipping {
				if len(buf)+len(chunk) > max+1 {
					skipping = true
					buf = buf[:0]
					tooLong++
				} else {
					buf = append(buf, chunk...)
				}
			}
			if complete || (err != nil && !errors.Is(err, bufio.ErrBufferFull)) {
				if l := trimNewline(buf); !skipping && len(bytes.TrimSpace(l)) > 0 {
					lines <- bytes.Clone(l)
				}
				buf = buf[:0]
				skipping = false
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return tooLong
		}
	}
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// signalGroup sends sig to every process of the group.
func signalGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// killGroup SIGKILLs whatever is left of the group.
func killGroup(pgid int) { signalGroup(pgid, syscall.SIGKILL) }

// reapGroup makes sure no process of the group outlives the turn: it kills
// stragglers and waits (bounded) until the group is empty. Processes that
// lost their parent are reaped by init, which takes a moment.
func reapGroup(pgid int) {
	if pgid <= 1 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling the kernel: there is no signal for "group empty"
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	// mu protects the following.
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
