package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// Runner runs one claude turn, emitting every event of it except `user` and
// `done`, which the manager writes itself. *claude.Runner satisfies it.
type Runner interface {
	Run(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome
}

// Defaults for a zero Config.
const (
	DefaultMaxConcurrentTurns = 2
	DefaultTurnTimeout        = 30 * time.Minute
	DefaultSubscriberBuffer   = 256
)

// MaxPromptBytes is the largest prompt a turn accepts.
const MaxPromptBytes = 64 << 10

// titleRunes is where a session's title (its first prompt) is cut.
const titleRunes = 80

// State is whether a session has a turn running.
type State string

// Session states.
const (
	StateIdle    State = "idle"
	StateRunning State = "running"
)

// Info describes a session as GET /api/sessions lists it.
type Info struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	Title       string    `json:"title"`
	State       State     `json:"state"`
	LastEventID int64     `json:"last_event_id"`
}

// Config configures a Manager. Dir and Runner are required; every other zero
// value is the safe default.
type Config struct {
	// Dir holds one folder per session ($BREAKGLASS_SESSIONS_DIR). Folders
	// whose name is not a session id (such as the agent's home) are left
	// alone.
	Dir string
	// Runner runs the turns.
	Runner Runner
	// MaxConcurrentTurns caps the turns running at once across sessions;
	// zero means DefaultMaxConcurrentTurns.
	MaxConcurrentTurns int
	// TurnTimeout ends a turn with outcome timeout; zero means
	// DefaultTurnTimeout.
	TurnTimeout time.Duration
	// SubscriberBuffer is how many events an attached client may lag
	// behind before it is dropped; zero means DefaultSubscriberBuffer.
	SubscriberBuffer int
	// TurnEnv, when set, gives a turn extra environment entries (the
	// agent's per-turn token) and a release func called when it ends.
	TurnEnv func(sessionID string) (env []string, release func())
	// Logger gets one line per turn and every persistence problem; nil
	// means no logging.
	Logger hclog.Logger
	// Metrics are the collectors; nil means NewMetrics(Registerer).
	Metrics *Metrics
	// Registerer is where NewMetrics registers when Metrics is nil; nil
	// means a private registry nobody scrapes.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Errors callers branch on, checked with errors.Is.
var (
	ErrNotFound       = errors.New("session not found")
	ErrBusy           = errors.New("a turn is already running in this session")
	ErrTooManyTurns   = errors.New("too many turns running")
	ErrNotRunning     = errors.New("no turn is running in this session")
	ErrEmptyPrompt    = errors.New("empty prompt")
	ErrPromptTooLarge = errors.New("prompt over 64 KiB")
	ErrBadCursor      = errors.New("invalid last event id")
	ErrReserved       = errors.New("user and done events belong to turns")
	ErrClosed         = errors.New("session manager closed")
)

// errShutdown is the cause that ends turns when the manager closes.
var errShutdown = errors.New("the web server stopped during this turn")

// Manager owns every session: logs, subscribers and turns.
type Manager struct {
	dir         string
	runner      Runner
	maxTurns    int
	turnTimeout time.Duration
	bufSize     int
	turnEnv     func(string) ([]string, func())
	log         hclog.Logger
	metrics     *Metrics
	now         func() time.Time

	base context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup // running turns

	// mu protects the following.
	mu       sync.Mutex
	sessions map[string]*sess
	running  int
	closed   bool
}

// sess is one session.
type sess struct {
	id        string
	dir       string
	createdAt time.Time

	// mu protects the following.
	mu     sync.Mutex
	events []event.Event
	file   *os.File
	// saved is the length of file's whole lines; unsaved is set once a
	// write failed (disk full, read-only): later events stay in memory only.
	saved   int64
	unsaved bool
	subs    map[*Subscription]struct{}
	turn    *turn
	title   string
	// conversation is set once claude reported a session (system/init):
	// later turns resume it.
	conversation bool
}

// turn is a session's running turn.
type turn struct {
	cancel context.CancelCauseFunc
	start  time.Time
	ended  bool // set with the done event: later emits are dropped
}

// New validates cfg, reloads every session found in cfg.Dir (closing a turn
// that was cut off with an `error` and a `done`), and returns the Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("session: Config.Dir is required")
	}
	if cfg.Runner == nil {
		return nil, errors.New("session: Config.Runner is required")
	}
	m := &Manager{
		dir:         cfg.Dir,
		runner:      cfg.Runner,
		maxTurns:    cfg.MaxConcurrentTurns,
		turnTimeout: cfg.TurnTimeout,
		bufSize:     cfg.SubscriberBuffer,
		turnEnv:     cfg.TurnEnv,
		log:         cfg.Logger,
		metrics:     cfg.Metrics,
		now:         cfg.Now,
		sessions:    map[string]*sess{},
	}
	switch {
	case m.maxTurns == 0:
		m.maxTurns = DefaultMaxConcurrentTurns
	case m.maxTurns < 0:
		return nil, fmt.Errorf("session: max concurrent turns %d: must be positive", m.maxTurns)
	}
	switch {
	case m.turnTimeout == 0:
		m.turnTimeout = DefaultTurnTimeout
	case m.turnTimeout < 0:
		return nil, fmt.Errorf("session: turn timeout %v: must be positive", m.turnTimeout)
	}
	switch {
	case m.bufSize == 0:
		m.bufSize = DefaultSubscriberBuffer
	case m.bufSize < 0:
		return nil, fmt.Errorf("session: subscriber buffer %d: must be positive", m.bufSize)
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.metrics == nil {
		reg := cfg.Registerer
		if reg == nil {
			reg = prometheus.NewRegistry()
		}
		var err error
		if m.metrics, err = NewMetrics(reg); err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("session: create sessions folder: %w", err)
	}
	if err := m.reload(); err != nil {
		return nil, err
	}
	m.base, m.stop = context.WithCancelCause(context.Background())
	return m, nil
}

// reload reads every session folder of m.dir.
func (m *Manager) reload() error {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("session: read sessions folder: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() || !uuid.Valid(de.Name()) {
			continue
		}
		l, err := loadFiles(m.dir, de.Name())
		if err != nil {
			m.log.Error("skipping unreadable session", "session", de.Name(), "error", err)
			continue
		}
		s := &sess{
			id:        l.meta.ID,
			dir:       mustSessionDir(m.dir, l.meta.ID),
			createdAt: l.meta.CreatedAt,
			events:    l.events,
			file:      l.file,
			saved:     l.size,
			subs:      map[*Subscription]struct{}{},
		}
		if l.torn {
			m.log.Warn("cut a torn line off a session's log", "session", s.id, "events", len(s.events))
		}
		var open *event.Event
		for i := range s.events {
			e := &s.events[i]
			switch e.Type {
			case event.User:
				open = e
				if s.title == "" {
					s.title = titleOf(e)
				}
			case event.Done:
				open = nil
			case event.Session:
				s.conversation = true
			}
		}
		if open != nil {
			// The process died during this turn: close it so every client
			// sees how it ended, and the next prompt may start.
			last := s.events[len(s.events)-1].Time
			s.mu.Lock()
			m.appendLocked(s, event.New(event.Error, event.ErrorData{
				Message: "the web server stopped during this turn; it did not finish",
			}))
			m.appendLocked(s, event.New(event.Done, event.DoneData{
				ExitCode:   -1,
				Outcome:    event.OutcomeError,
				DurationMS: last.Sub(open.Time).Milliseconds(),
			}))
			s.mu.Unlock()
			m.log.Warn("closed a turn cut off by a restart", "session", s.id)
		}
		m.sessions[s.id] = s
	}
	m.metrics.Sessions.Set(float64(len(m.sessions)))
	return nil
}

// mustSessionDir is sessionDir for an id that already passed ValidID.
func mustSessionDir(dir, id string) string {
	p, err := sessionDir(dir, id)
	if err != nil {
		panic("session: invalid id reached mustSessionDir")
	}
	return p
}

// Create makes a new, empty session.
func (m *Manager) Create() (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Info{}, ErrClosed
	}
	id := uuid.New()
	for m.sessions[id] != nil {
		id = uuid.New()
	}
	created := m.now().UTC()
	f, err := createFiles(m.dir, meta{ID: id, CreatedAt: created})
	if err != nil {
		return Info{}, fmt.Errorf("create session: %w", err)
	}
	s := &sess{
		id:        id,
		dir:       mustSessionDir(m.dir, id),
		createdAt: created,
		file:      f,
		subs:      map[*Subscription]struct{}{},
	}
	m.sessions[id] = s
	m.metrics.Sessions.Set(float64(len(m.sessions)))
	m.log.Info("session created", "session", id)
	return s.info(), nil
}

// lookup returns session id; anything that is not a known, valid id is
// ErrNotFound.
func (m *Manager) lookup(id string) (*sess, error) {
	if !uuid.Valid(id) {
		return nil, ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[id]
	if s == nil {
		return nil, ErrNotFound
	}
	return s, nil
}

// Get describes session id.
func (m *Manager) Get(id string) (Info, error) {
	s, err := m.lookup(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info(), nil
}

// List describes every session, newest first.
func (m *Manager) List() []Info {
	m.mu.Lock()
	all := make([]*sess, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	infos := make([]Info, 0, len(all))
	for _, s := range all {
		s.mu.Lock()
		infos = append(infos, s.info())
		s.mu.Unlock()
	}
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].CreatedAt.Equal(infos[j].CreatedAt) {
			return infos[i].CreatedAt.After(infos[j].CreatedAt)
		}
		return infos[i].ID < infos[j].ID
	})
	return infos
}

// info describes s; s.mu must be held, except while s is not yet shared.
func (s *sess) info() Info {
	state := StateIdle
	if s.turn != nil {
		state = StateRunning
	}
	return Info{
		ID:          s.id,
		CreatedAt:   s.createdAt,
		Title:       s.title,
		State:       state,
		LastEventID: int64(len(s.events)),
	}
}

// titleOf is a user event's text as a title.
func titleOf(e *event.Event) string {
	var d event.UserData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return ""
	}
	return title(d.Text)
}

// title is a prompt on one line, cut to titleRunes.
func title(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(t) <= titleRunes {
		return t
	}
	r := []rune(t)
	return string(r[:titleRunes-1]) + "…"
}

// Append adds an event that is not part of a turn (a `verb` or `approval`
// event) to session id's log and sends it to its subscribers.
func (m *Manager) Append(id string, e event.Event) error {
	if e.Type == event.User || e.Type == event.Done {
		return ErrReserved
	}
	s, err := m.lookup(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.appendLocked(s, e)
	return nil
}

// appendLocked numbers e, writes it to the session's file, keeps it, and
// offers it to every subscriber without blocking; a subscriber whose buffer
// is full is dropped (it resumes by id). s.mu must be held.
//
// The first write that fails (disk full, read-only folder) cuts the
// partial line back off, so what was saved stays a clean log that reloads
// whole, stops saving this session (a later line would follow a gap), and
// tells every client with an `error` event; the session goes on in memory.
func (m *Manager) appendLocked(s *sess, e event.Event) {
	e.ID = int64(len(s.events)) + 1
	e.Time = m.now().UTC()
	var failed error
	if line, err := encodeLine(e); err != nil {
		m.log.Error("encode event", "session", s.id, "error", err)
	} else if s.file != nil && !s.unsaved {
		if _, err := s.file.Write(line); err != nil {
			failed = err
			s.unsaved = true
			m.log.Error("persist event: this session is no longer saved", "session", s.id, "id", e.ID, "error", err)
			if terr := s.file.Truncate(s.saved); terr != nil {
				m.log.Error("cut a partly written event", "session", s.id, "error", terr)
			}
		} else {
			s.saved += int64(len(line))
		}
	}
	defer func() {
		if failed != nil {
			m.appendLocked(s, event.New(event.Error, event.ErrorData{Message: unsavedMessage(failed)}))
		}
	}()
	s.events = append(s.events, e)
	for sub := range s.subs {
		if e.ID <= sub.after {
			continue
		}
		select {
		case sub.ch <- e:
		default:
			m.dropLocked(s, sub)
			m.log.Debug("dropped a slow subscriber", "session", s.id, "at", e.ID)
		}
	}
}

// unsavedMessage tells the operator that a session's events can no longer
// be saved, with the system's reason (never a path).
func unsavedMessage(err error) string {
	why := "write error"
	var errno syscall.Errno
	if errors.As(err, &errno) {
		why = errno.Error()
	}
	return "this session's events cannot be saved (" + why + "): it goes on, but what follows is lost if the web restarts"
}

// dropLocked detaches sub, closing its channel. s.mu must be held.
func (m *Manager) dropLocked(s *sess, sub *Subscription) {
	if _, ok := s.subs[sub]; !ok {
		return
	}
	delete(s.subs, sub)
	close(sub.ch)
	m.metrics.Subscribers.Dec()
}

// Prompt starts a turn in session id with text from actor. It returns once
// the `user` event is in the log; the turn runs on without any client.
func (m *Manager) Prompt(id, text, actor string) error {
	if strings.TrimSpace(text) == "" {
		return ErrEmptyPrompt
	}
	if len(text) > MaxPromptBytes {
		return ErrPromptTooLarge
	}
	s, err := m.lookup(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turn != nil {
		return ErrBusy
	}
	if err := m.acquire(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(m.base)
	t := &turn{cancel: cancel, start: m.now()}
	s.turn = t
	if s.title == "" {
		s.title = title(text)
	}
	m.appendLocked(s, event.New(event.User, event.UserData{Text: text, Actor: actor}))
	spec := claude.Turn{SessionID: s.id, Prompt: text, Resume: s.conversation, Dir: s.dir}
	m.metrics.TurnsRunning.Inc()
	m.log.Info("turn started", "session", s.id, "actor", actor, "resume", spec.Resume)
	go m.runTurn(ctx, s, t, spec)
	return nil
}

// acquire takes one of the turn slots and registers the turn with wg.
func (m *Manager) acquire() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.running >= m.maxTurns {
		return ErrTooManyTurns
	}
	m.running++
	m.wg.Add(1)
	return nil
}

// release gives a turn slot back.
func (m *Manager) release() {
	m.mu.Lock()
	m.running--
	m.mu.Unlock()
}

// runTurn runs one turn to its end and writes its one `done` event, whatever
// happened (the runner panicking included).
func (m *Manager) runTurn(ctx context.Context, s *sess, t *turn, spec claude.Turn) {
	defer m.wg.Done()
	defer t.cancel(nil)
	tctx, cancel := context.WithTimeout(ctx, m.turnTimeout)
	defer cancel()
	release := func() {}
	if m.turnEnv != nil {
		var env []string
		env, release = m.turnEnv(s.id)
		spec.Env = env
		if release == nil {
			release = func() {}
		}
	}
	out := m.safeRun(tctx, s, t, spec)
	release()
	if errors.Is(context.Cause(ctx), errShutdown) {
		m.emit(s, t, event.New(event.Error, event.ErrorData{Message: errShutdown.Error()}))
		out.Outcome = event.OutcomeError
	}
	switch out.Outcome {
	case event.OutcomeSuccess, event.OutcomeError, event.OutcomeCancelled, event.OutcomeTimeout:
	default:
		m.log.Error("runner returned an unknown outcome", "session", s.id, "outcome", out.Outcome)
		out.Outcome = event.OutcomeError
	}
	m.release()
	m.metrics.TurnsRunning.Dec()
	s.mu.Lock()
	dur := m.now().Sub(t.start)
	t.ended = true
	m.appendLocked(s, event.New(event.Done, event.DoneData{
		ExitCode:   out.ExitCode,
		Outcome:    out.Outcome,
		DurationMS: dur.Milliseconds(),
	}))
	s.turn = nil
	s.mu.Unlock()
	m.metrics.Turns.WithLabelValues(out.Outcome).Inc()
	m.metrics.TurnDuration.Observe(dur.Seconds())
	m.log.Info("turn ended", "session", s.id, "outcome", out.Outcome, "exit_code", out.ExitCode, "duration", dur)
}

// safeRun calls the runner, turning a panic into an error event and outcome.
func (m *Manager) safeRun(ctx context.Context, s *sess, t *turn, spec claude.Turn) (out claude.Outcome) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("turn runner panicked", "session", s.id, "panic", r)
			m.emit(s, t, event.New(event.Error, event.ErrorData{Message: "internal error: the turn crashed"}))
			out = claude.Outcome{Outcome: event.OutcomeError, ExitCode: -1}
		}
	}()
	return m.runner.Run(ctx, spec, func(e event.Event) { m.emit(s, t, e) })
}

// emit appends an event of turn t, unless t has ended or the event is one
// only the manager writes.
func (m *Manager) emit(s *sess, t *turn, e event.Event) {
	if e.Type == event.User || e.Type == event.Done {
		m.log.Error("runner emitted a reserved event", "session", s.id, "event", e.Type)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ended {
		return
	}
	switch e.Type {
	case event.Session:
		s.conversation = true
	case event.Result:
		var r event.ResultData
		if json.Unmarshal(e.Data, &r) == nil && r.TotalCostUSD > 0 {
			m.metrics.CostUSD.Add(r.TotalCostUSD)
		}
	}
	m.appendLocked(s, e)
}

// Cancel asks session id's running turn to stop; its `done` says cancelled.
func (m *Manager) Cancel(id string) error {
	s, err := m.lookup(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turn == nil {
		return ErrNotRunning
	}
	s.turn.cancel(claude.ErrCancelled)
	m.log.Info("turn cancel requested", "session", s.id)
	return nil
}

// Close ends every running turn (each gets an `error` and its `done`), waits
// for them, detaches every subscriber and closes the logs. The Manager
// accepts nothing afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.stop(errShutdown)
	m.wg.Wait()
	// Lock order is s.mu before m.mu (Prompt): take the list, then let go.
	m.mu.Lock()
	all := make([]*sess, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	var errs []error
	for _, s := range all {
		s.mu.Lock()
		for sub := range s.subs {
			m.dropLocked(s, sub)
		}
		if s.file != nil {
			errs = append(errs, s.file.Close())
			s.file = nil
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}
