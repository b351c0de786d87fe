package claude

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

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

// Tools is the fixed tool list of every turn (--tools). Whether a call runs
// is the session's mode's decision (Turn.Permit): there is no
// --allowedTools.
const Tools = "Bash,Read,Grep,Glob"

// DefaultBashTimeout is the Bash tool's time limit when Config.BashTimeout
// is zero: above the longest wait of a `pve` verb for the operator.
const DefaultBashTimeout = 15 * time.Minute

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
	// AgentDefinition is the agent file (agents.Breakglass), passed inline
	// (--agents) with --agent Agent: the CLI reads no agent file. Empty
	// means no --agent at all.
	AgentDefinition []byte
	// Sandbox, when set, confines every claude process (see Sandbox); the
	// web always sets it. Home is then unused: each session has its own.
	Sandbox *Sandbox
	// Environ is the ambient environment (KEY=value) from which the child's
	// is filtered: only the allowlist of AllowedEnv passes.
	Environ []string
	// Logger gets subprocess and parsing diagnostics; nil discards.
	Logger hclog.Logger
	// Registerer gets the runner's metrics (breakglass_stream_lines_total,
	// breakglass_agent_cost_usd_total); nil means a private registry nobody
	// scrapes.
	Registerer prometheus.Registerer
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
	// BashTimeout is the Bash tool's default and maximum time limit
	// (BASH_DEFAULT_TIMEOUT_MS, BASH_MAX_TIMEOUT_MS): it must be above the
	// longest a command may wait for the operator (an approval). Default
	// DefaultBashTimeout.
	BashTimeout time.Duration
}

// Runner runs claude turns. It is safe for concurrent use; the caller
// serialises turns of one session.
type Runner struct {
	cfg         Config
	log         hclog.Logger
	env         []string // filtered ambient environment, without HOME
	metrics     *metrics
	inlineAgent string // the --agents value, "" for none
}

// withDefaults fills every empty field of cfg that has a default.
func withDefaults(cfg Config) Config {
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
	if cfg.BashTimeout <= 0 {
		cfg.BashTimeout = DefaultBashTimeout
	}
	return cfg
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Runner, error) {
	cfg = withDefaults(cfg)
	switch {
	case cfg.Sandbox == nil && (cfg.Home == "" || !filepath.IsAbs(cfg.Home)):
		return nil, fmt.Errorf("%w: Home must be an absolute path, got %q", ErrConfig, cfg.Home)
	case cfg.Sandbox != nil && (!filepath.IsAbs(cfg.Sandbox.Launcher) || !filepath.IsAbs(cfg.Sandbox.Shell)):
		return nil, fmt.Errorf("%w: the sandbox's launcher and shell must be absolute paths", ErrConfig)
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
	if cfg.Sandbox != nil {
		if err := cfg.Sandbox.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	inline, err := parseAgent(cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: log.Named("claude"), env: FilterEnv(cfg.Environ), metrics: m, inlineAgent: inline}, nil
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
	bashMS := strconv.FormatInt(r.cfg.BashTimeout.Milliseconds(), 10)
	env = append(env, "HOME="+r.cfg.Home, "PATH="+path,
		"BASH_DEFAULT_TIMEOUT_MS="+bashMS, "BASH_MAX_TIMEOUT_MS="+bashMS)
	for _, kv := range t.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || k == "HOME" || k == "PATH" || k == "CLAUDECODE" || strings.HasPrefix(k, "BASH_") {
			r.log.Warn("turn environment entry refused", "key", k)
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Args returns claude's argv (without the program name) for a turn. The
// prompt is not in it: it is the first stream-json user message on stdin,
// which stays open for the turn, and claude asks the web (on stdout, answered
// on stdin) before any tool call it would ask permission for
// (docs/operator-loop.md).
func (r *Runner) Args(t Turn, resume bool) []string {
	idFlag := "--session-id"
	if resume {
		idFlag = "--resume"
	}
	args := []string{
		"-p",
		idFlag, t.SessionID,
		"--input-format", "stream-json",
		"--output-format", "stream-json",
		"--verbose",
		"--include-partial-messages",
	}
	args = append(args, r.settingArgs()...)
	args = append(args,
		"--model", r.cfg.Model,
		"--tools", Tools,
		"--permission-prompt-tool", "stdio",
		"--permission-prompts", "host",
		"--permission-mode", "default",
	)
	if r.cfg.MaxBudgetUSD > 0 {
		args = append(args, "--max-budget-usd", strconv.FormatFloat(r.cfg.MaxBudgetUSD, 'f', -1, 64))
	}
	return args
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

// command builds everything one claude process starts with: the one place
// its program, argv, environment and working directory are decided.
func (r *Runner) command(bin string, env []string, t Turn, resume bool) command {
	mark := newMark()
	return r.confine(command{
		Path: bin,
		Args: r.Args(t, resume),
		Env:  append(env[:len(env):len(env)], MarkVar+"="+mark),
		Dir:  t.Dir,
		Mark: mark,
	}, t.Dir)
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
	t, err := r.checkTurn(t)
	if err != nil {
		emit(errorEvent(err.Error()))
		return Outcome{Outcome: event.OutcomeError, ExitCode: -1}
	}
	env := r.childEnv(t)
	bin, err := r.binary(env)
	if err == nil {
		err = r.sessionFolders(t.Dir)
	}
	if err != nil {
		emit(errorEvent(err.Error()))
		return Outcome{Outcome: event.OutcomeError, ExitCode: -1}
	}
	end := r.attempt(ctx, t, r.command(bin, env, t, t.Resume), t.Resume, emit)
	if end.Swap {
		r.log.Info("retrying with the other session flag", "session", t.SessionID, "resume", !t.Resume)
		end = r.attempt(ctx, t, r.command(bin, env, t, !t.Resume), !t.Resume, emit)
	}
	t.Input.Close()
	if end.Swap {
		for _, e := range end.Held {
			emit(e)
		}
		emit(errorEvent("claude refused both --session-id and --resume for this session: " + end.Stderr))
	}
	return end.Outcome
}

// checkTurn refuses a turn whose id is not a UUID or that has no folder,
// and makes its folder absolute.
func (r *Runner) checkTurn(t Turn) (Turn, error) {
	if !uuid.Valid(t.SessionID) {
		return t, fmt.Errorf("run claude: %w: %q", ErrInvalidSessionID, capString(t.SessionID, 64))
	}
	if t.Dir == "" {
		return t, errors.New("run claude: the turn has no directory")
	}
	abs, err := filepath.Abs(t.Dir)
	if err != nil {
		return t, fmt.Errorf("run claude: turn directory: %w", err)
	}
	t.Dir = abs
	return t, nil
}

// attempt runs one claude process to its end and returns the machine's
// last step.
func (r *Runner) attempt(ctx context.Context, t Turn, c command, resume bool, emit func(event.Event)) step {
	session := t.SessionID
	if ctx.Err() != nil {
		return notStarted(ctx, emit)
	}
	limits := childLimits{MaxLine: r.cfg.MaxLine, MaxStderr: r.cfg.MaxStderr, Grace: r.cfg.KillGrace}
	ch, err := startChild(c, limits)
	if err != nil {
		msg := fmt.Sprintf("start claude: %v", err)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			msg = fmt.Sprintf("%v: %s", ErrNotInstalled, InstallHint)
		}
		emit(errorEvent(msg))
		return step{Done: true, Outcome: Outcome{Outcome: event.OutcomeError, ExitCode: -1}}
	}
	log := r.log.With("session", session, "resume", resume, "pgid", ch.PGID())
	log.Debug("claude started")
	if r.cfg.Started != nil {
		r.cfg.Started(ch.PGID())
	}
	l := &turnLoop{
		r: r, ch: ch, log: log, emit: emit, tr: NewTranslator(), ctx: ctx, turn: t, cwd: c.Dir,
		m:       newMachine(machineConfig{InitTimeout: r.cfg.InitTimeout, RetryCutoff: r.cfg.RetryCutoff, Resume: resume}, time.Now()),
		permits: make(chan permitDone), asks: map[string]context.CancelFunc{},
	}
	l.pctx, l.pcancel = context.WithCancel(ctx)
	return l.run()
}

// notStarted ends an attempt whose turn ended before claude started.
func notStarted(ctx context.Context, emit func(event.Event)) step {
	if errors.Is(context.Cause(ctx), ErrCancelled) {
		return step{Done: true, Outcome: Outcome{Outcome: event.OutcomeCancelled, ExitCode: -1}}
	}
	emit(errorEvent("the turn reached its time limit before claude started"))
	return step{Done: true, Outcome: Outcome{Outcome: event.OutcomeTimeout, ExitCode: -1}}
}

// turnLoop is the plumbing between one child and its machine: it turns
// lines, the exit, the context and the watchdog's deadline into inputs,
// and the machine's steps into events and signals.
type turnLoop struct {
	r    *Runner
	ch   *child
	m    *machine
	tr   *Translator
	log  hclog.Logger
	emit func(event.Event)
	ctx  context.Context

	watchdog *time.Timer // the machine's Deadline; nil: none
	deadline time.Time
	kill     *time.Timer // SIGKILL after SIGINT's grace
	drain    *time.Timer // EOF forced after claude exited

	// turn carries the prompt, Permit and Input; cwd is claude's folder.
	turn Turn
	cwd  string
	// permits brings Permit's answers back to the loop, which alone writes
	// stdin. pctx ends every pending Permit when the turn ends.
	permits chan permitDone
	pctx    context.Context
	pcancel context.CancelFunc
	pwg     sync.WaitGroup
	// asks are the permission requests waiting for Permit, by request id.
	asks map[string]context.CancelFunc
}

// permitDone is Permit's answer to one request.
type permitDone struct {
	req PermissionRequest
	ans PermissionAnswer
}

func (l *turnLoop) run() step {
	defer l.stopTimers()
	defer l.stopAsks()
	lines, exited, ctxDone := l.ch.Lines(), l.ch.Exited(), l.ctx.Done()
	l.write(encodeUser(l.turn.Prompt))
	l.rearm()
	for lines != nil || exited != nil {
		select {
		case <-l.turn.Input.readyC():
			for _, text := range l.turn.Input.take() {
				l.write(encodeUser(text))
			}
		case d := <-l.permits:
			if cancel, ok := l.asks[d.req.RequestID]; ok {
				delete(l.asks, d.req.RequestID)
				cancel()
				l.write(encodePermission(d.req, d.ans))
			}
		case b, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			l.apply(l.m.Step(l.line(b)))
		case <-exited:
			// claude is gone; its group may not be. Give the reader a
			// moment to drain what is buffered, then force EOF. A late
			// cancel changes nothing now.
			exited, ctxDone = nil, nil
			l.ch.Kill()
			l.drain = time.AfterFunc(l.r.cfg.KillGrace, l.ch.CloseOutput)
		case <-ctxDone:
			ctxDone = nil
			l.apply(l.m.Step(inStop{Cancel: errors.Is(context.Cause(l.ctx), ErrCancelled)}))
		case now := <-l.timerC(l.watchdog):
			l.watchdog = nil
			l.apply(l.m.Step(inTick{Now: now}))
		case <-l.timerC(l.kill):
			l.kill = nil
			l.log.Warn("claude ignored SIGINT; killing its process group")
			l.ch.Kill()
		}
	}
	return l.finish()
}

// line translates one stdout line into the machine's input, counting it.
func (l *turnLoop) line(b []byte) inLine {
	t := l.tr.Line(b)
	l.r.metrics.lines.WithLabelValues(string(t.Kind)).Inc()
	switch t.Kind {
	case LineInvalid:
		l.log.Warn("claude printed a line that is not stream-json", "line", capString(string(b), 200))
	case LineUnknown:
		l.log.Debug("unknown stream-json line ignored", "line", capString(string(b), 200))
	}
	if t.Result != nil && t.Result.TotalCostUSD > 0 {
		l.r.metrics.cost.Add(t.Result.TotalCostUSD)
	}
	return inLine{T: t, Text: capString(string(b), 200), Now: time.Now()}
}

// apply carries out a step: its events, its stdin, and stopping claude.
func (l *turnLoop) apply(s step) {
	for _, e := range s.Emit {
		l.emit(e)
	}
	for _, b := range s.Write {
		l.write(b)
	}
	if s.Ask != nil {
		l.ask(*s.Ask)
	}
	if cancel, ok := l.asks[s.Withdraw]; ok && s.Withdraw != "" {
		delete(l.asks, s.Withdraw)
		cancel()
	}
	if s.CloseInput {
		// Messages accepted before the close still go in: claude answers
		// them before it exits.
		for _, text := range l.turn.Input.Close() {
			l.write(encodeUser(text))
		}
		l.ch.CloseInput()
	}
	if s.Interrupt {
		l.log.Info("stopping claude", "reason", l.m.stop)
		l.ch.Interrupt()
		l.kill = time.NewTimer(l.r.cfg.KillGrace)
	}
	l.rearm()
}

// write puts one line on claude's stdin. A failure is logged: claude has
// exited or stopped reading, and the exit or the watchdog ends the turn.
func (l *turnLoop) write(b []byte) {
	if err := l.ch.WriteInput(b); err != nil {
		l.log.Warn("write to claude's stdin", "error", err)
	}
}

// ask hands a permission request to the turn's Permit, in its own
// goroutine: the answer may wait for the operator, and the loop goes on.
func (l *turnLoop) ask(req PermissionRequest) {
	permit := l.turn.Permit
	if permit == nil {
		l.write(encodePermission(req, PermissionAnswer{Message: "Nobody can approve commands in this turn; this command was not run."}))
		return
	}
	if _, dup := l.asks[req.RequestID]; dup {
		return
	}
	req.Cwd = l.cwd
	ctx, cancel := context.WithCancel(l.pctx)
	l.asks[req.RequestID] = cancel
	l.pwg.Add(1)
	go func() {
		defer l.pwg.Done()
		a := permit(ctx, req)
		select {
		case l.permits <- permitDone{req: req, ans: a}:
		case <-l.pctx.Done():
		}
	}()
}

// stopAsks ends every pending Permit and waits for them.
func (l *turnLoop) stopAsks() {
	l.pcancel()
	l.pwg.Wait()
}

// rearm points the watchdog at the machine's next deadline.
func (l *turnLoop) rearm() {
	d, ok := l.m.Deadline()
	if ok && l.watchdog != nil && d.Equal(l.deadline) {
		return
	}
	if l.watchdog != nil {
		l.watchdog.Stop()
		l.watchdog = nil
	}
	if ok {
		l.deadline = d
		l.watchdog = time.NewTimer(time.Until(d))
	}
}

// timerC is t's channel, or nil (never ready) when there is no timer.
func (l *turnLoop) timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (l *turnLoop) stopTimers() {
	for _, t := range []*time.Timer{l.watchdog, l.kill, l.drain} {
		if t != nil {
			t.Stop()
		}
	}
}

// finish reaps the child and feeds its exit to the machine.
func (l *turnLoop) finish() step {
	x := l.ch.Finish()
	if x.Marked > 0 {
		l.log.Info("killed processes the turn left behind", "count", x.Marked)
	}
	if x.TooLong > 0 {
		l.log.Warn("claude printed lines over the limit; skipped", "count", x.TooLong, "limit", l.r.cfg.MaxLine)
		l.r.metrics.lines.WithLabelValues(string(LineInvalid)).Add(float64(x.TooLong))
	}
	s := l.m.Step(inExit{x})
	l.log.Debug("claude ended", "exit", x.Code, "signal", x.Signal, "stop", l.m.stop, "outcome", s.Outcome.Outcome)
	for _, e := range s.Emit {
		l.emit(e)
	}
	return s
}
