package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	DefaultIdleTimeout        = 300 * time.Second
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
	Archived    bool      `json:"archived"`
	// UpdatedAt is the time of the last event, created_at when none.
	UpdatedAt time.Time `json:"updated_at"`
	// Mode is the agent mode (autopilot, careful, read-only).
	Mode string `json:"mode"`
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
	// IdleTimeout is how long a session with no subscriber and no turn
	// keeps its log open before it is dropped from memory; zero means
	// DefaultIdleTimeout ($BREAKGLASS_SESSION_IDLE_SECONDS).
	IdleTimeout time.Duration
	// RetainFor archives (never deletes) sessions with no event for this
	// long; zero means never ($BREAKGLASS_RETAIN_DAYS).
	RetainFor time.Duration
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
	// Observer, when set, is told of every event appended to a session
	// (package notify turns some into notifications).
	Observer Observer

	// holdRebuild, when set (tests), makes the background rebuild wait
	// until it is closed.
	holdRebuild chan struct{}
	// Mode is the agent mode of a session that has none set
	// ($BREAKGLASS_AGENT_MODE); zero means claude.DefaultMode (careful).
	Mode claude.Mode
	// PermissionTimeout bounds the wait for the operator's answer to a
	// permission request; zero means DefaultPermissionTimeout.
	PermissionTimeout time.Duration
}

// Observer is told of each event a session appends, with the number of
// clients attached at that moment.
//
// WARNING: it is called with the session's lock held, so it must return at
// once and never call back into the Manager (notify.Notifier queues without
// blocking; TestObserverSeesEventsWithAttachedCount guards the call).
type Observer interface {
	ObserveEvent(sessionID string, e event.Event, attached int)
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
	ErrArchived       = errors.New("this session is archived: restore it first")
)

// errShutdown is the cause that ends turns when the manager closes.
var errShutdown = errors.New("the web server stopped during this turn")

// Manager owns every session: summaries, logs, subscribers and turns. It
// holds a summary per session; a session's log is open only while it is in
// use (attached, running, or written to in the last IdleTimeout), and its
// events are never held in memory: replay reads them from the file.
type Manager struct {
	dir         string
	runner      Runner
	maxTurns    int
	turnTimeout time.Duration
	bufSize     int
	idle        time.Duration
	retain      time.Duration
	turnEnv     func(string) ([]string, func())
	log         hclog.Logger
	metrics     *Metrics
	now         func() time.Time
	observer    Observer
	mode        claude.Mode
	permTimeout time.Duration

	base    context.Context
	stop    context.CancelCauseFunc
	wg      sync.WaitGroup // running turns
	janitor sync.WaitGroup
	rebuilt chan struct{}
	hold    chan struct{}

	// mu protects the following.
	mu       sync.Mutex
	sessions map[string]*sess
	running  int
	closed   bool
}

// sess is one session.
type sess struct {
	id  string
	dir string

	// mu protects the following.
	mu sync.Mutex
	// sum is the summary as it will next be written; dirty is set when it
	// is behind the log.
	sum   summary
	dirty bool
	index promptIndex
	// file is the log open for appending; nil while the session is not in
	// use (dropped from memory).
	file *os.File
	// saved is the length of the log's whole lines and savedLast the id of
	// the last of them; last is the id of the last event. unsaved is set
	// once a write failed (disk full, read-only): later events stay in
	// pending, in memory only, and the session is never dropped.
	saved     int64
	savedLast int64
	last      int64
	unsaved   bool
	pending   []event.Event
	subs      map[*Subscription]struct{}
	turn      *turn
	// defMode is the mode when the summary has none.
	defMode claude.Mode
	// perms are the permission requests asked of the operator, by id;
	// permOrder keeps their order to bound how many are kept.
	perms     map[string]*permission
	permOrder []string
	// touched is the last time the session was in use.
	touched time.Time
	closed  bool
	// stale is set while start-up's summary is provisional (only its id,
	// times, title and last id are known): see provisionalLocked.
	stale bool
}

// turn is a session's running turn.
type turn struct {
	cancel context.CancelCauseFunc
	start  time.Time
	ended  bool // set with the done event: later emits are dropped
	// input takes the operator's steering messages.
	input *claude.Input
}

// New validates cfg, reads the summary of every session found in cfg.Dir
// (rebuilding the ones that are missing or stale from their log, and closing
// a turn that was cut off with an `error` and a `done`), and returns the
// Manager.
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
		idle:        cfg.IdleTimeout,
		retain:      cfg.RetainFor,
		turnEnv:     cfg.TurnEnv,
		log:         cfg.Logger,
		metrics:     cfg.Metrics,
		now:         cfg.Now,
		observer:    cfg.Observer,
		hold:        cfg.holdRebuild,
		mode:        cfg.Mode,
		permTimeout: cfg.PermissionTimeout,
		sessions:    map[string]*sess{},
	}
	switch {
	case m.mode == "":
		m.mode = claude.DefaultMode
	case !m.mode.Valid():
		return nil, fmt.Errorf("session: agent mode %q: %w", m.mode, ErrBadMode)
	}
	switch {
	case m.permTimeout == 0:
		m.permTimeout = DefaultPermissionTimeout
	case m.permTimeout < 0:
		return nil, fmt.Errorf("session: permission timeout %v: must be positive", m.permTimeout)
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
	switch {
	case m.idle == 0:
		m.idle = DefaultIdleTimeout
	case m.idle < 0:
		return nil, fmt.Errorf("session: idle timeout %v: must be positive", m.idle)
	}
	if m.retain < 0 {
		return nil, fmt.Errorf("session: retention %v: must be positive or zero (off)", m.retain)
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
	m.sweep(m.now())
	m.rebuilt = make(chan struct{})
	m.janitor.Add(2)
	go m.runJanitor()
	go m.rebuildStale()
	return m, nil
}

// reload reads every session folder's summary.
func (m *Manager) reload() error {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("session: read sessions folder: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() || !uuid.Valid(de.Name()) {
			continue
		}
		s, err := m.load(de.Name())
		if err != nil {
			m.log.Error("skipping unreadable session", "session", de.Name(), "error", err)
			continue
		}
		if s != nil {
			m.sessions[s.id] = s
		}
	}
	m.metrics.Sessions.Set(float64(len(m.sessions)))
	return nil
}

// load reads session id's summary, or rebuilds it from the log when it is
// missing or stale. A folder with neither file is skipped (nil).
func (m *Manager) load(id string) (*sess, error) {
	sdir := mustSessionDir(m.dir, id)
	sum, fresh, err := readSummary(sdir, id)
	if err != nil {
		return nil, err
	}
	s := &sess{id: id, dir: sdir, sum: sum, subs: map[*Subscription]struct{}{}, touched: m.now(), defMode: m.mode}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh {
		s.saved, s.last, s.savedLast = sum.Size, sum.LastEventID, sum.LastEventID
		s.index = promptIndex{prompts: sum.Prompts}
		for _, p := range sum.Prompts {
			s.index.total += len(p)
		}
		if sum.State == StateRunning {
			m.closeCutTurnLocked(s, sum.UpdatedAt.Sub(sum.TurnStart))
		}
		return s, nil
	}
	if sum.CreatedAt.IsZero() {
		// No session.json to trust and no event to rebuild from: a folder
		// cut off while it was being made (the disk filled, the process
		// died). There is nothing in it to keep.
		if fi, err := os.Stat(filepath.Join(sdir, eventsFile)); errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
			m.log.Warn("skipping a session folder that was never finished", "session", id)
			return nil, nil
		}
	}
	if m.provisionalLocked(s) {
		return s, nil
	}
	if err := m.rebuildLocked(s); err != nil {
		return nil, err
	}
	return s, nil
}

// deferBytes is the log size from which a missing or stale summary is
// rebuilt after start instead of before it: smaller logs are read at once.
const deferBytes = 256 << 10

// provisionalLocked describes s from the two ends of its log (the first
// line: created_at when session.json lost it, the title when it is a
// prompt; the last whole line: last_event_id and updated_at) and marks it
// stale, so start-up does not read every log of a history written by an
// older release; the whole log is read in the background after start
// (rebuildStale), or before anything that needs it (freshLocked). It
// reports false when the ends cannot tell (the log is small, or its lines
// too long): the caller rebuilds at once. s.mu must be held.
func (m *Manager) provisionalLocked(s *sess) bool {
	path := filepath.Join(s.dir, eventsFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < deferBytes {
		return false
	}
	first, last, ok := logEnds(path, fi.Size())
	if !ok || first.ID != 1 || last.ID < 1 {
		return false
	}
	if s.sum.CreatedAt.IsZero() {
		s.sum.CreatedAt = first.Time
	}
	if !s.sum.Renamed && first.Type == event.User {
		s.sum.Title = title(userText(first))
	}
	s.sum.UpdatedAt = last.Time
	s.last = last.ID
	s.stale = true
	return true
}

// freshLocked rebuilds s's summary from its log if start-up left it
// provisional. Everything that reads or writes the log, or writes the
// summary, calls it first. s.mu must be held.
func (m *Manager) freshLocked(s *sess) error {
	if !s.stale {
		return nil
	}
	return m.rebuildLocked(s)
}

// rebuildStale reads the logs start-up left provisional, newest first,
// until they are all rebuilt or the manager closes; then it closes
// m.rebuilt.
func (m *Manager) rebuildStale() {
	defer m.janitor.Done()
	defer close(m.rebuilt)
	if m.hold != nil {
		select {
		case <-m.hold:
		case <-m.base.Done():
			return
		}
	}
	var stale []*sess
	for _, s := range m.all() {
		s.mu.Lock()
		if s.stale {
			stale = append(stale, s)
		}
		s.mu.Unlock()
	}
	if len(stale) == 0 {
		return
	}
	sortNewestFirst(stale)
	start := time.Now()
	done := 0
	for _, s := range stale {
		if m.base.Err() != nil {
			break
		}
		s.mu.Lock()
		if !s.closed {
			if err := m.freshLocked(s); err != nil {
				m.log.Error("rebuild a session's summary from its log", "session", s.id, "error", err)
			} else {
				done++
			}
		}
		s.mu.Unlock()
	}
	m.log.Info("rebuilt the summaries of sessions written without one", "sessions", done, "of", len(stale), "took", time.Since(start))
}

// Rebuilt is closed once every summary start-up left provisional has been
// rebuilt from its log (at once when there was none), or the manager
// closed.
func (m *Manager) Rebuilt() <-chan struct{} { return m.rebuilt }

// sortNewestFirst orders sessions by their last event, newest first,
// holding one session's lock at a time.
func sortNewestFirst(all []*sess) {
	at := make(map[*sess]time.Time, len(all))
	for _, s := range all {
		s.mu.Lock()
		at[s] = s.sum.UpdatedAt
		s.mu.Unlock()
	}
	sort.SliceStable(all, func(i, j int) bool { return at[all[i]].After(at[all[j]]) })
}

// rebuildLocked re-derives s's summary from its whole log (cutting a torn
// tail off), keeps what the operator set, closes a turn the process died
// in, and writes the summary. s.mu must be held.
func (m *Manager) rebuildLocked(s *sess) error {
	r, err := rebuild(s.dir)
	if err != nil {
		return err
	}
	// A summary write cut off by a crash leaves its temporary file.
	if tmps, _ := filepath.Glob(filepath.Join(s.dir, ".session.json-*")); len(tmps) > 0 {
		for _, tmp := range tmps {
			_ = os.Remove(tmp)
		}
	}
	if r.torn {
		m.log.Warn("cut a torn line off a session's log", "session", s.id, "events", r.last)
	}
	sum := &s.sum
	if sum.CreatedAt.IsZero() {
		// session.json was missing or unreadable: the first event is the
		// best witness of when the session began.
		sum.CreatedAt = r.first
		if sum.CreatedAt.IsZero() {
			sum.CreatedAt = m.now().UTC()
		}
		m.log.Warn("rebuilt a session's missing or damaged session.json from its log", "session", s.id)
	}
	if !sum.Renamed {
		sum.Title = r.firstPrompt
	}
	sum.State = StateIdle
	sum.TurnStart = time.Time{}
	sum.Conversation = r.conversation
	sum.Prompts = r.prompts
	sum.UpdatedAt = r.final
	if sum.UpdatedAt.IsZero() {
		sum.UpdatedAt = sum.CreatedAt
	}
	s.index = promptIndex{prompts: r.prompts}
	for _, p := range r.prompts {
		s.index.total += len(p)
	}
	s.saved, s.last, s.savedLast = r.size, r.last, r.last
	s.stale = false
	s.dirty = true
	if r.open != nil {
		m.closeCutTurnLocked(s, r.final.Sub(r.open.Time))
	}
	m.saveLocked(s)
	return nil
}

// closeCutTurnLocked closes a turn the process died in, so every client
// sees how it ended and the next prompt may start. s.mu must be held.
func (m *Manager) closeCutTurnLocked(s *sess, dur time.Duration) {
	m.appendLocked(s, event.New(event.Error, event.ErrorData{
		Message: "the web server stopped during this turn; it did not finish",
	}))
	m.appendLocked(s, event.New(event.Done, event.DoneData{
		ExitCode:   -1,
		Outcome:    event.OutcomeError,
		DurationMS: dur.Milliseconds(),
	}))
	s.sum.State = StateIdle
	s.sum.TurnStart = time.Time{}
	m.saveLocked(s)
	m.log.Warn("closed a turn cut off by a restart", "session", s.id)
}

// saveLocked writes s's summary when it is behind. Nothing unsaved is
// described: the summary covers the log's whole lines only. s.mu must be
// held.
func (m *Manager) saveLocked(s *sess) {
	if !s.dirty || s.stale {
		return
	}
	sum := s.sum
	sum.LastEventID = s.savedLast
	sum.Prompts = s.index.prompts
	if err := writeSummary(s.dir, s.file, &sum); err != nil {
		m.log.Error("write session summary", "session", s.id, "error", err)
		return
	}
	s.dirty = false
}

// openLocked opens s's log for appending when it is not open. A log that is
// not the length the summary says (changed while the session was not in
// use) is read whole again first. s.mu must be held.
func (m *Manager) openLocked(s *sess) error {
	if s.file != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.dir, eventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat event log: %w", err)
	}
	if fi.Size() != s.saved {
		f.Close()
		m.log.Warn("a session's log changed while it was not in use: reading it again", "session", s.id)
		if err := m.rebuildLocked(s); err != nil {
			return err
		}
		return m.openLocked(s)
	}
	s.file = f
	return nil
}

// runJanitor drops idle sessions from memory and applies retention until
// the manager closes.
func (m *Manager) runJanitor() {
	defer m.janitor.Done()
	every := min(max(m.idle/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.base.Done():
			return
		case <-t.C:
			m.sweep(m.now())
		}
	}
}

// sweep closes the log of every session not in use for the idle timeout
// (writing its summary first), and archives the sessions retention says
// to.
func (m *Manager) sweep(now time.Time) {
	for _, s := range m.all() {
		s.mu.Lock()
		// A provisional session is left to rebuildStale: its summary
		// must not be written before it is whole.
		inUse := len(s.subs) > 0 || s.turn != nil || s.unsaved || s.stale
		if !inUse && s.file != nil && now.Sub(s.touched) >= m.idle {
			m.saveLocked(s)
			if err := s.file.Close(); err != nil {
				m.log.Error("close event log", "session", s.id, "error", err)
			}
			s.file = nil
			m.log.Debug("session dropped from memory", "session", s.id)
		}
		if m.retain > 0 && !inUse && !s.sum.Archived && now.Sub(s.sum.UpdatedAt) >= m.retain && now.Sub(s.sum.RestoredAt) >= m.retain {
			s.sum.Archived = true
			s.dirty = true
			m.saveLocked(s)
			m.log.Info("session archived by retention (its files are kept)", "session", s.id, "last_event", s.sum.UpdatedAt)
		}
		s.mu.Unlock()
	}
}

// all returns every session.
func (m *Manager) all() []*sess {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := make([]*sess, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	return all
}

// loaded counts the sessions whose log is open.
func (m *Manager) loaded() int {
	n := 0
	for _, s := range m.all() {
		s.mu.Lock()
		if s.file != nil {
			n++
		}
		s.mu.Unlock()
	}
	return n
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
	now := m.now()
	created := now.UTC()
	sdir := mustSessionDir(m.dir, id)
	sum := summary{ID: id, CreatedAt: created, State: StateIdle, UpdatedAt: created, Mode: string(m.mode)}
	f, err := createFiles(sdir, sum)
	if err != nil {
		return Info{}, fmt.Errorf("create session: %w", err)
	}
	s := &sess{
		id:      id,
		dir:     sdir,
		sum:     sum,
		file:    f,
		subs:    map[*Subscription]struct{}{},
		touched: now,
		defMode: m.mode,
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

// Get describes session id, archived or not.
func (m *Manager) Get(id string) (Info, error) {
	s, err := m.lookup(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info(), nil
}

// List describes every session that is not archived, newest first.
func (m *Manager) List() []Info {
	infos, _ := m.Search(Query{})
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
		CreatedAt:   s.sum.CreatedAt,
		Title:       s.sum.Title,
		State:       state,
		LastEventID: s.last,
		Archived:    s.sum.Archived,
		UpdatedAt:   s.sum.UpdatedAt,
		Mode:        string(s.modeLocked()),
	}
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
	if s.closed {
		return ErrClosed
	}
	if err := m.freshLocked(s); err != nil {
		return err
	}
	m.appendLocked(s, e)
	if s.turn == nil {
		m.saveLocked(s)
	}
	return nil
}

// appendLocked numbers e, writes it to the session's file, and offers it to
// every subscriber without blocking; a subscriber whose buffer is full is
// dropped (it resumes by id). s.mu must be held.
//
// The first write that fails (disk full, read-only folder) cuts the
// partial line back off, so what was saved stays a clean log that reloads
// whole, stops saving this session (a later line would follow a gap), and
// tells every client with an `error` event; the session goes on in memory.
func (m *Manager) appendLocked(s *sess, e event.Event) {
	e.ID = s.last + 1
	now := m.now()
	e.Time = now.UTC()
	line, err := encodeLine(e)
	if err != nil {
		m.log.Error("encode event", "session", s.id, "error", err)
		return
	}
	var failed error
	if !s.unsaved {
		if err := m.openLocked(s); err != nil {
			failed = err
		} else if _, err := s.file.Write(line); err != nil {
			failed = err
			if terr := s.file.Truncate(s.saved); terr != nil {
				m.log.Error("cut a partly written event", "session", s.id, "error", terr)
			}
		} else {
			s.saved += int64(len(line))
			s.savedLast = e.ID
		}
		if failed != nil {
			s.unsaved = true
			m.log.Error("persist event: this session is no longer saved", "session", s.id, "id", e.ID, "error", failed)
		}
	}
	defer func() {
		if failed != nil {
			m.appendLocked(s, event.New(event.Error, event.ErrorData{Message: unsavedMessage(failed)}))
		}
	}()
	if s.unsaved {
		s.pending = append(s.pending, e)
	}
	s.last = e.ID
	s.touched = now
	s.sum.UpdatedAt = e.Time
	s.dirty = true
	switch e.Type {
	case event.User:
		text := userText(e)
		if s.sum.Title == "" {
			s.sum.Title = title(text)
		}
		s.index.add(text)
	case event.Session:
		s.sum.Conversation = true
	}
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
	if m.observer != nil {
		m.observer.ObserveEvent(s.id, e, len(s.subs))
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
	s.touched = m.now()
	m.metrics.Subscribers.Dec()
}

// Prompt starts a turn in session id with text from actor. It returns once
// the `user` event is in the log; the turn runs on without any client.
// While a turn runs, the text steers it instead (see Steer).
func (m *Manager) Prompt(id, text, actor string) error {
	_, err := m.PromptOrSteer(id, text, actor)
	return err
}

// PromptOrSteer is Prompt, and reports whether text went into the running
// turn (steered) rather than starting one: delivered on claude's stdin as a
// new user message and logged as a `user` event with steer set. A turn
// that already has its result takes no more: ErrTurnEnding.
func (m *Manager) PromptOrSteer(id, text, actor string) (steered bool, err error) {
	if strings.TrimSpace(text) == "" {
		return false, ErrEmptyPrompt
	}
	if len(text) > MaxPromptBytes {
		return false, ErrPromptTooLarge
	}
	s, err := m.lookup(id)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	if err := m.freshLocked(s); err != nil {
		return false, err
	}
	if t := s.turn; t != nil {
		if t.input == nil {
			return false, ErrBusy
		}
		if err := t.input.Steer(text); err != nil {
			return false, ErrTurnEnding
		}
		m.appendLocked(s, event.New(event.User, event.UserData{Text: text, Actor: actor, Steer: true}))
		m.log.Info("turn steered", "session", s.id, "actor", actor)
		return true, nil
	}
	if s.sum.Archived {
		return false, ErrArchived
	}
	if err := m.acquire(); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(m.base)
	t := &turn{cancel: cancel, start: m.now(), input: claude.NewInput()}
	s.turn = t
	m.appendLocked(s, event.New(event.User, event.UserData{Text: text, Actor: actor}))
	s.sum.State = StateRunning
	s.sum.TurnStart = s.sum.UpdatedAt
	m.saveLocked(s)
	spec := claude.Turn{SessionID: s.id, Prompt: text, Resume: s.sum.Conversation, Dir: s.dir, Input: t.input}
	spec.Permit = func(pctx context.Context, req claude.PermissionRequest) claude.PermissionAnswer {
		return m.permit(pctx, s, t, req)
	}
	m.metrics.TurnsRunning.Inc()
	m.log.Info("turn started", "session", s.id, "actor", actor, "resume", spec.Resume)
	go m.runTurn(ctx, s, t, spec)
	return false, nil
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
	if !out.Outcome.Valid() {
		m.log.Error("runner returned an unknown outcome", "session", s.id, "outcome", out.Outcome)
		out.Outcome = event.OutcomeError
	}
	m.release()
	m.metrics.TurnsRunning.Dec()
	s.mu.Lock()
	dur := m.now().Sub(t.start)
	m.expireLocked(s)
	t.ended = true
	// Counted before the done goes out: a client that saw it finds it in
	// the metrics (TestMetrics).
	m.metrics.Turns.WithLabelValues(string(out.Outcome)).Inc()
	m.metrics.TurnDuration.Observe(dur.Seconds())
	m.appendLocked(s, event.New(event.Done, event.DoneData{
		ExitCode:   out.ExitCode,
		Outcome:    out.Outcome,
		DurationMS: dur.Milliseconds(),
	}))
	s.turn = nil
	s.sum.State = StateIdle
	s.sum.TurnStart = time.Time{}
	m.saveLocked(s)
	s.mu.Unlock()
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
// for them, detaches every subscriber, writes the summaries and closes the
// logs. The Manager accepts nothing afterwards.
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
	m.janitor.Wait()
	// Lock order is s.mu before m.mu (Prompt): take the list, then let go.
	var errs []error
	for _, s := range m.all() {
		s.mu.Lock()
		for sub := range s.subs {
			m.dropLocked(s, sub)
		}
		m.saveLocked(s)
		if s.file != nil {
			errs = append(errs, s.file.Close())
			s.file = nil
		}
		s.closed = true
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}
