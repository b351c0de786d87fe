package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for a zero Config.
const (
	DefaultQueueSize   = 64
	DefaultWorkers     = 4
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 3
	DefaultBackoff     = 2 * time.Second
	// DefaultSubject is the VAPID "sub" when Config.Subject is empty.
	DefaultSubject = "mailto:breakglass@localhost"
	// maxBackoff caps one wait between attempts, Retry-After included.
	maxBackoff = 60 * time.Second
	// pushTTL is how long a push service keeps an undelivered message.
	pushTTL = 12 * 3600
)

// Channels, the channel label of breakglass_push_deliveries_total.
const (
	ChannelWebPush = "webpush"
	ChannelNtfy    = "ntfy"
)

// Outcomes, the outcome label of breakglass_push_deliveries_total: ok,
// failed (after the last attempt, or refused), gone (404/410: the
// subscription was removed), dropped (the queue was full).
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"
	OutcomeGone    = "gone"
	OutcomeDropped = "dropped"
)

// Config configures a Notifier. Dir is required; every other zero value is
// the safe default (no ntfy).
type Config struct {
	// Dir holds vapid.json and subscriptions.json (created 0700; files
	// 0600): the web passes <sessions folder>/push.
	Dir string
	// Subject is the VAPID "sub" claim: an https URL or a mailto: address;
	// empty means DefaultSubject.
	Subject string
	// NtfyURL is an ntfy topic URL (e.g. https://ntfy.sh/my-topic); empty
	// means no ntfy. NtfyToken, when set, is sent as a bearer token.
	NtfyURL   string
	NtfyToken string
	// PublicURL is the page's address as the operator opens it
	// (https://breakglass.example); ntfy's click links are made absolute
	// with it. Empty means ntfy messages carry no click link.
	PublicURL string
	// QueueSize bounds the deliveries waiting; a message that finds the
	// queue full is dropped and counted. Zero means DefaultQueueSize.
	QueueSize int
	// Workers deliver in parallel; zero means DefaultWorkers.
	Workers int
	// Timeout bounds each attempt; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts per delivery; zero means DefaultMaxAttempts.
	MaxAttempts int
	// Backoff is the wait after the first failed attempt, doubled after
	// each further one; zero means DefaultBackoff.
	Backoff time.Duration
	// Logger gets delivery failures and store problems; nil means none.
	Logger hclog.Logger
	// Registerer receives breakglass_push_deliveries_total; nil means a
	// private registry.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterDelivery, when set, is called once each delivery has ended and
	// its status is recorded (channel and outcome as in the metric). It
	// must not block.
	AfterDelivery func(channel, outcome string)
}

// Notifier keeps the subscriptions and delivers messages to them.
type Notifier struct {
	dir       string
	subject   string
	ntfyURL   string
	ntfyToken string
	publicURL *url.URL
	keys      vapidKeys
	timeout   time.Duration
	attempts  int
	backoff   time.Duration
	log       hclog.Logger
	now       func() time.Time
	after     func(channel, outcome string)
	public    *http.Client
	loopback  *http.Client
	ntfy      *http.Client

	deliveries *prometheus.CounterVec
	retried    *prometheus.CounterVec

	queue  chan job
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu protects the following.
	mu       sync.Mutex
	subs     []*Subscription
	ntfyLast *Delivery
	closed   bool
	retries  map[*time.Timer]struct{} // scheduled retries, stopped by Close
	version  uint64                   // of subs, bumped by every change

	// saveMu serialises writes of the subscriptions file, which happen
	// outside mu so that Notify never waits on the disk.
	saveMu sync.Mutex
	// saved is the version last written; saveMu protects it.
	saved uint64
}

// job is one message for one target: a subscription's endpoint, or ntfy
// when endpoint is empty.
type job struct {
	msg      Message
	endpoint string
	attempt  int // 1 for the first
}

// New loads or creates the VAPID keys and loads the subscriptions from
// cfg.Dir, and starts the delivery workers. A subscriptions file that does
// not decode is moved aside and logged; New goes on without it.
func New(cfg Config) (*Notifier, error) {
	if cfg.Dir == "" {
		return nil, errors.New("notify: Config.Dir is required")
	}
	n := &Notifier{
		dir:       cfg.Dir,
		subject:   cfg.Subject,
		ntfyURL:   cfg.NtfyURL,
		ntfyToken: cfg.NtfyToken,
		timeout:   cfg.Timeout,
		attempts:  cfg.MaxAttempts,
		backoff:   cfg.Backoff,
		log:       cfg.Logger,
		now:       cfg.Now,
		after:     cfg.AfterDelivery,
		public:    newPublicClient(),
		loopback:  newLoopbackClient(),
		ntfy:      &http.Client{CheckRedirect: noRedirect},
	}
	if n.subject == "" {
		n.subject = DefaultSubject
	}
	if !strings.HasPrefix(n.subject, "mailto:") && !strings.HasPrefix(n.subject, "https://") {
		return nil, fmt.Errorf("notify: the VAPID subject must be a mailto: or https:// URI (RFC 8292 §2.1)")
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	if n.attempts <= 0 {
		n.attempts = DefaultMaxAttempts
	}
	if n.backoff <= 0 {
		n.backoff = DefaultBackoff
	}
	if n.log == nil {
		n.log = hclog.NewNullLogger()
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.after == nil {
		n.after = func(string, string) {}
	}
	if cfg.NtfyURL != "" {
		u, err := url.Parse(cfg.NtfyURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("notify: ntfy URL must be an http(s) URL of a topic, without user info")
		}
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("notify: public URL must be an http(s) URL")
		}
		n.publicURL = u
	}
	qs := cfg.QueueSize
	if qs <= 0 {
		qs = DefaultQueueSize
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	n.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakglass_push_deliveries_total",
		Help: "Notification deliveries by channel (webpush, ntfy) and outcome (ok, failed, gone, dropped).",
	}, []string{"channel", "outcome"})
	n.retried = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakglass_push_retries_total",
		Help: "Notification delivery attempts scheduled again after a network error, 429 or 5xx, by channel.",
	}, []string{"channel"})
	for _, c := range []prometheus.Collector{n.deliveries, n.retried} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("notify: register metrics: %w", err)
		}
	}
	for _, ch := range []string{ChannelWebPush, ChannelNtfy} {
		n.retried.WithLabelValues(ch)
		for _, o := range []string{OutcomeOK, OutcomeFailed, OutcomeGone, OutcomeDropped} {
			n.deliveries.WithLabelValues(ch, o)
		}
	}

	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	keys, err := loadOrCreateVAPID(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	n.keys = keys
	subs, err := loadSubscriptions(cfg.Dir, n.now())
	if err != nil {
		n.log.Error("push subscriptions not loaded", "error", err)
	}
	n.subs = subs

	n.queue = make(chan job, qs)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for range workers {
		n.wg.Add(1)
		go n.work()
	}
	return n, nil
}

// Close stops the workers (an attempt in flight is cancelled) and waits for
// them. Messages still queued are not sent.
func (n *Notifier) Close() {
	n.mu.Lock()
	n.closed = true
	for t := range n.retries {
		t.Stop()
	}
	n.retries = nil
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}

// PublicKey is the VAPID public key, base64url: the browser's
// applicationServerKey.
func (n *Notifier) PublicKey() string { return n.keys.PublicKey }

// NtfyConfigured reports whether messages also go to ntfy.
func (n *Notifier) NtfyConfigured() bool { return n.ntfyURL != "" }

// Errors of Subscribe.
var (
	ErrTooMany  = errors.New("too many push subscriptions")
	ErrBadKinds = errors.New("unknown notification kind")
)

// Subscribe stores a subscription (replacing one with the same endpoint,
// whose events it updates). events empty means every kind.
func (n *Notifier) Subscribe(endpoint string, keys Keys, events []Kind) (Subscription, error) {
	if _, err := ValidateEndpoint(endpoint); err != nil {
		return Subscription{}, err
	}
	if err := checkKeys(keys); err != nil {
		return Subscription{}, err
	}
	var ev []Kind
	for _, k := range events {
		if !validKind(k) {
			return Subscription{}, fmt.Errorf("%w: %q", ErrBadKinds, k)
		}
		if !slices.Contains(ev, k) {
			ev = append(ev, k)
		}
	}
	if len(events) == 0 {
		ev = slices.Clone(Kinds)
	}
	n.mu.Lock()
	var s *Subscription
	for _, old := range n.subs {
		if old.Endpoint == endpoint {
			s = old
			s.Keys, s.Events = keys, ev
		}
	}
	if s == nil {
		if len(n.subs) >= MaxSubscriptions {
			n.mu.Unlock()
			return Subscription{}, ErrTooMany
		}
		s = &Subscription{Endpoint: endpoint, Keys: keys, Events: ev, CreatedAt: n.now().UTC()}
		n.subs = append(n.subs, s)
	}
	out := *s
	snap, v := n.changedLocked()
	n.mu.Unlock()
	return out, n.persist(snap, v)
}

// ErrNotSubscribed: no subscription has that endpoint.
var ErrNotSubscribed = errors.New("no such push subscription")

// Unsubscribe removes the subscription with endpoint.
func (n *Notifier) Unsubscribe(endpoint string) error {
	n.mu.Lock()
	if !n.removeLocked(endpoint) {
		n.mu.Unlock()
		return ErrNotSubscribed
	}
	snap, v := n.changedLocked()
	n.mu.Unlock()
	return n.persist(snap, v)
}

func (n *Notifier) removeLocked(endpoint string) bool {
	i := slices.IndexFunc(n.subs, func(s *Subscription) bool { return s.Endpoint == endpoint })
	if i < 0 {
		return false
	}
	n.subs = slices.Delete(n.subs, i, i+1)
	return true
}

// changedLocked marks the subscriptions changed and returns a copy to
// persist, with its version. n.mu must be held.
func (n *Notifier) changedLocked() ([]*Subscription, uint64) {
	n.version++
	snap := make([]*Subscription, len(n.subs))
	for i, s := range n.subs {
		c := *s
		c.Events = slices.Clone(s.Events)
		if s.Last != nil {
			d := *s.Last
			c.Last = &d
		}
		snap[i] = &c
	}
	return snap, n.version
}

// persist writes a copy of the subscriptions, unless a newer one was
// written already; a failure is logged and returned. It must be called
// without n.mu: the disk may be slow, and Notify must not wait on it.
func (n *Notifier) persist(snap []*Subscription, v uint64) error {
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	if v <= n.saved {
		return nil
	}
	if err := saveSubscriptions(n.dir, snap); err != nil {
		n.log.Error("push subscriptions not saved", "error", err)
		return err
	}
	n.saved = v
	return nil
}

// Status is what GET /api/push/subscriptions answers.
type Status struct {
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
	Ntfy          *NtfyStatus          `json:"ntfy"`
}

// SubscriptionStatus is a subscription without its keys.
type SubscriptionStatus struct {
	Endpoint  string    `json:"endpoint"`
	Events    []Kind    `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	Last      *Delivery `json:"last_delivery"`
}

// NtfyStatus is ntfy's last delivery (the topic URL is not shown).
type NtfyStatus struct {
	Last *Delivery `json:"last_delivery"`
}

// Status lists the subscriptions with their last delivery, and ntfy's when
// it is configured (nil otherwise).
func (n *Notifier) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{Subscriptions: []SubscriptionStatus{}}
	for _, s := range n.subs {
		ss := SubscriptionStatus{Endpoint: s.Endpoint, Events: slices.Clone(s.Events), CreatedAt: s.CreatedAt}
		if s.Last != nil {
			d := *s.Last
			ss.Last = &d
		}
		st.Subscriptions = append(st.Subscriptions, ss)
	}
	if n.ntfyURL != "" {
		st.Ntfy = &NtfyStatus{}
		if n.ntfyLast != nil {
			d := *n.ntfyLast
			st.Ntfy.Last = &d
		}
	}
	return st
}

// Notify queues msg for every subscription that wants its kind, and for
// ntfy. It never blocks: a delivery that finds the queue full is dropped,
// counted and shown as the target's last delivery. It returns how many
// deliveries were queued.
func (n *Notifier) Notify(msg Message) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return 0
	}
	queued := 0
	for _, s := range n.subs {
		if s.wants(msg.Kind) && n.offerLocked(job{msg: msg, endpoint: s.Endpoint, attempt: 1}) {
			queued++
		}
	}
	if n.ntfyURL != "" && n.offerLocked(job{msg: msg, attempt: 1}) {
		queued++
	}
	return queued
}

// offerLocked queues j without blocking; a full queue drops it, counted
// and shown as the target's last delivery. n.mu must be held.
func (n *Notifier) offerLocked(j job) bool {
	select {
	case n.queue <- j:
		return true
	default:
	}
	ch := channelOf(j)
	n.deliveries.WithLabelValues(ch, OutcomeDropped).Inc()
	// Shown at once, saved with the next change (Notify never waits on
	// the disk).
	n.recordLocked(j, Delivery{Status: StatusDropped, Error: "the delivery queue was full", Kind: j.msg.Kind, At: n.now().UTC()})
	n.log.Warn("notification dropped: queue full", "channel", ch, "kind", j.msg.Kind)
	n.after(ch, OutcomeDropped)
	return false
}

func channelOf(j job) string {
	if j.endpoint == "" {
		return ChannelNtfy
	}
	return ChannelWebPush
}

// retryLater queues j again after wait, from a timer: a worker never
// sleeps through a backoff, so one failing push service does not hold up
// the others.
func (n *Notifier) retryLater(j job, wait time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if n.retries == nil {
		n.retries = map[*time.Timer]struct{}{}
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.retries, t)
		if !n.closed {
			n.offerLocked(j)
		}
	})
	n.retries[t] = struct{}{}
}

// recordLocked sets the last delivery of j's target and reports whether a
// subscription changed (ntfy's status is not saved). n.mu must be held.
func (n *Notifier) recordLocked(j job, d Delivery) bool {
	if j.endpoint == "" {
		n.ntfyLast = &d
		return false
	}
	for _, s := range n.subs {
		if s.Endpoint == j.endpoint {
			s.Last = &d
			return true
		}
	}
	return false
}

func (n *Notifier) work() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case j := <-n.queue:
			n.deliver(j)
		}
	}
}

// attemptResult is one attempt's end.
type attemptResult struct {
	code       int
	err        error
	retryAfter time.Duration
}

// deliver makes one attempt at j and records its outcome, or schedules the
// next attempt with backoff on a network error, 429 or 5xx.
func (n *Notifier) deliver(j job) {
	ch := channelOf(j)
	last := n.attempt(j)
	if last.err == nil && last.code >= 200 && last.code < 300 {
		n.finish(j, ch, OutcomeOK, Delivery{Status: StatusOK, Code: last.code, Kind: j.msg.Kind, At: n.now().UTC()})
		return
	}
	if ch == ChannelWebPush && (last.code == http.StatusNotFound || last.code == http.StatusGone) {
		n.mu.Lock()
		removed := n.removeLocked(j.endpoint)
		snap, v := n.changedLocked()
		n.mu.Unlock()
		if removed {
			_ = n.persist(snap, v)
		}
		n.deliveries.WithLabelValues(ch, OutcomeGone).Inc()
		n.log.Info("push subscription removed: the push service no longer knows it", "code", last.code)
		n.after(ch, OutcomeGone)
		return
	}
	retryable := last.err != nil || last.code == http.StatusTooManyRequests || last.code >= 500
	if retryable && j.attempt < n.attempts && n.ctx.Err() == nil {
		wait := n.backoff << (j.attempt - 1)
		if last.retryAfter > wait {
			wait = last.retryAfter
		}
		j.attempt++
		n.retried.WithLabelValues(ch).Inc()
		n.retryLater(j, min(wait, maxBackoff))
		return
	}
	d := Delivery{Status: StatusFailed, Code: last.code, Kind: j.msg.Kind, At: n.now().UTC()}
	switch {
	case last.err != nil:
		d.Error = last.err.Error()
	default:
		d.Error = "the push service answered " + strconv.Itoa(last.code)
	}
	n.log.Warn("notification not delivered", "channel", ch, "kind", j.msg.Kind, "code", last.code, "error", d.Error)
	n.finish(j, ch, OutcomeFailed, d)
}

func (n *Notifier) finish(j job, ch, outcome string, d Delivery) {
	n.deliveries.WithLabelValues(ch, outcome).Inc()
	n.mu.Lock()
	changed := n.recordLocked(j, d)
	snap, v := n.changedLocked()
	n.mu.Unlock()
	if changed {
		_ = n.persist(snap, v)
	}
	n.after(ch, outcome)
}

// attempt makes one delivery attempt within the timeout.
func (n *Notifier) attempt(j job) attemptResult {
	ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	defer cancel()
	var resp *http.Response
	var err error
	if j.endpoint == "" {
		resp, err = n.sendNtfy(ctx, j.msg)
	} else {
		resp, err = n.sendWebPush(ctx, j)
	}
	if err != nil {
		return attemptResult{err: plainError(err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	r := attemptResult{code: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		r.retryAfter = time.Duration(s) * time.Second
	}
	return r
}

// plainError keeps the kind of a transport error without the URL (an
// endpoint is a capability; it does not go into logs or the status).
func plainError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("timed out")
	case errors.Is(err, context.Canceled):
		return errors.New("cancelled: the web is stopping")
	case errors.Is(err, errPrivateAddr):
		return errPrivateAddr
	}
	return errors.New("network error: " + err.Error())
}

func (n *Notifier) sendWebPush(ctx context.Context, j job) (*http.Response, error) {
	n.mu.Lock()
	var keys Keys
	found := false
	for _, s := range n.subs {
		if s.Endpoint == j.endpoint {
			keys, found = s.Keys, true
		}
	}
	n.mu.Unlock()
	if !found {
		return nil, errors.New("unsubscribed before delivery")
	}
	u, err := ValidateEndpoint(j.endpoint)
	if err != nil {
		return nil, err
	}
	client := n.public
	if u.Scheme == "http" {
		client = n.loopback
	}
	payload, err := json.Marshal(j.msg)
	if err != nil {
		return nil, err
	}
	urgency := webpush.UrgencyNormal
	if j.msg.Kind == KindApproval || j.msg.Kind == KindPermission || j.msg.Kind == KindVM {
		urgency = webpush.UrgencyHigh
	}
	return webpush.SendNotificationWithContext(ctx, payload, &webpush.Subscription{
		Endpoint: j.endpoint,
		Keys:     webpush.Keys{Auth: keys.Auth, P256dh: keys.P256dh},
	}, &webpush.Options{
		HTTPClient: client,
		// webpush-go adds "mailto:" to a subject that is not https.
		Subscriber:      strings.TrimPrefix(n.subject, "mailto:"),
		TTL:             pushTTL,
		Urgency:         urgency,
		VAPIDPublicKey:  n.keys.PublicKey,
		VAPIDPrivateKey: n.keys.PrivateKey,
	})
}

// sendNtfy publishes msg to the ntfy topic: the body as plain text, the
// title and click link as headers (ntfy's publish API).
func (n *Notifier) sendNtfy(ctx context.Context, msg Message) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.ntfyURL, bytes.NewReader([]byte(msg.Body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Title", msg.Title)
	req.Header.Set("Tags", string(msg.Kind))
	if msg.Kind == KindApproval || msg.Kind == KindPermission || msg.Kind == KindVM {
		req.Header.Set("Priority", "high")
	}
	if n.publicURL != nil {
		ref, err := url.Parse(msg.URL)
		if err == nil {
			req.Header.Set("Click", n.publicURL.ResolveReference(ref).String())
		}
	}
	if n.ntfyToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.ntfyToken)
	}
	return n.ntfy.Do(req)
}
