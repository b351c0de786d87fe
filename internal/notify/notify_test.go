package notify_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/event"
	"breakglass/internal/notify"
	"breakglass/internal/testing/ntfydouble"
	"breakglass/internal/testing/pushdouble"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is how long a test waits for a signal that should come at once; it
// is a bound on failure, never a pause.
const wait = 10 * time.Second

type delivery struct{ channel, outcome string }

// rig is a Notifier with a push service double and one subscription.
type rig struct {
	n     *notify.Notifier
	push  *pushdouble.Server
	sub   *pushdouble.Subscription
	done  chan delivery
	reg   *prometheus.Registry
	dir   string
	ntfy  *ntfydouble.Server
	close func()
}

func newRig(t *testing.T, mod func(*notify.Config)) *rig {
	t.Helper()
	r := &rig{done: make(chan delivery, 256), reg: prometheus.NewRegistry(), dir: t.TempDir()}
	cfg := notify.Config{
		Dir:           r.dir,
		Backoff:       time.Millisecond,
		Registerer:    r.reg,
		AfterDelivery: func(ch, o string) { r.done <- delivery{ch, o} },
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := notify.New(cfg)
	require.NoError(t, err)
	r.n = n
	r.push, err = pushdouble.New(n.PublicKey())
	require.NoError(t, err)
	r.sub, err = r.push.Subscribe()
	require.NoError(t, err)
	_, err = n.Subscribe(r.sub.Endpoint, notify.Keys{P256dh: r.sub.Keys.P256dh, Auth: r.sub.Keys.Auth}, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		n.Close()
		r.push.Close()
	})
	return r
}

func (r *rig) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.done:
		return d
	case <-time.After(wait):
		t.Fatal("no delivery ended")
		return delivery{}
	}
}

func (r *rig) received(t *testing.T) (pushdouble.Message, notify.Message) {
	t.Helper()
	select {
	case m := <-r.push.Delivered():
		var msg notify.Message
		require.NoError(t, json.Unmarshal(m.Plaintext, &msg), "payload %q", m.Plaintext)
		return m, msg
	case rej := <-r.push.Rejected():
		t.Fatalf("push service refused the message: %s", rej.Reason)
	case <-time.After(wait):
		t.Fatal("no push arrived")
	}
	return pushdouble.Message{}, notify.Message{}
}

func TestTestPushIsSignedAndDecrypts(t *testing.T) {
	r := newRig(t, nil)
	assert.Equal(t, 1, r.n.Notify(notify.Test()))
	m, msg := r.received(t)
	assert.Equal(t, notify.Test(), msg)
	assert.Equal(t, notify.DefaultSubject, m.Subject)
	assert.Equal(t, r.push.URL(), m.Audience)
	assert.LessOrEqual(t, time.Until(m.Expiry), pushdouble.MaxJWTLifetime)
	assert.NotEmpty(t, m.TTL)
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeOK}, r.next(t))

	st := r.n.Status()
	require.Len(t, st.Subscriptions, 1)
	last := st.Subscriptions[0].Last
	require.NotNil(t, last)
	assert.Equal(t, notify.StatusOK, last.Status)
	assert.Equal(t, 201, last.Code)
	assert.Equal(t, notify.KindTest, last.Kind)
	assert.False(t, last.At.IsZero())
	assert.Nil(t, st.Ntfy, "no ntfy configured")
	assert.Equal(t, 1.0, testutil.ToFloat64(counter(t, r.reg, "webpush", "ok")))

	// The status is saved with the subscription.
	r.n.Close()
	n2, err := notify.New(notify.Config{Dir: r.dir})
	require.NoError(t, err)
	defer n2.Close()
	require.Len(t, n2.Status().Subscriptions, 1)
	require.NotNil(t, n2.Status().Subscriptions[0].Last)
	assert.Equal(t, notify.StatusOK, n2.Status().Subscriptions[0].Last.Status)
}

// counter finds breakglass_push_deliveries_total{channel,outcome}.
func counter(t *testing.T, reg *prometheus.Registry, channel, outcome string) prometheus.Collector {
	t.Helper()
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "breakglass_push_deliveries_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["channel"] == channel && l["outcome"] == outcome {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
				}
			}
		}
	})
}

const sid = "0b6f3f5e-8f2a-4c39-9a43-2f1d3c9e7a10"

func TestSessionEventsBecomeShortMessages(t *testing.T) {
	approval := event.New(event.Approval, map[string]any{
		"approval_id": "a1", "verb": "reset", "state": "pending",
		"args": []string{"--secret-arg", "rm -rf /"},
	})
	resolved := event.New(event.Approval, event.ApprovalData{ApprovalID: "a1", Verb: "reset", State: event.ApprovalApproved})
	permission := event.New(event.Type("permission"), map[string]any{
		"request_id": "r1", "tool": "Bash", "state": "pending",
		"input": map[string]string{"command": "cat /etc/shadow"},
	})
	done := event.New(event.Done, event.DoneData{Outcome: event.OutcomeTimeout})
	text := event.New(event.Text, event.TextData{Delta: "model text"})
	hostile := event.New(event.Approval, map[string]any{"verb": "reset; curl evil", "state": "pending"})
	tests := []struct {
		name     string
		e        event.Event
		attached int
		want     *notify.Message
	}{
		{"approval-pending", approval, 1, ptr(notify.Approval(sid, "reset"))},
		{"approval-resolved", resolved, 0, nil},
		{"permission-pending", permission, 2, ptr(notify.Permission(sid, "Bash"))},
		{"done-unattached", done, 0, ptr(notify.TurnEnded(sid, "timeout"))},
		{"done-attached", done, 1, nil},
		{"text", text, 0, nil},
		{"hostile-verb-name", hostile, 0, ptr(notify.Approval(sid, "a power verb"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := notify.MessageFor(sid, tc.e, tc.attached)
			if tc.want == nil {
				assert.False(t, ok)
				return
			}
			require.True(t, ok)
			assert.Equal(t, *tc.want, got)
			assert.Equal(t, "/#/s/"+sid, got.URL)
			b, _ := json.Marshal(got)
			for _, leak := range []string{"--secret-arg", "rm -rf", "shadow", "command", "model text", "curl"} {
				assert.NotContains(t, string(b), leak)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestApprovalAndTurnPushesCarryTheSessionLink(t *testing.T) {
	r := newRig(t, nil)
	r.n.ObserveEvent(sid, event.New(event.Approval, event.ApprovalData{ApprovalID: "a", Verb: "cycle", State: event.ApprovalPending}), 1)
	_, msg := r.received(t)
	assert.Equal(t, notify.KindApproval, msg.Kind)
	assert.Equal(t, "/#/s/"+sid, msg.URL)
	assert.Contains(t, msg.Title, "cycle")

	// A turn that ends with a client attached is not pushed; one with none is.
	r.n.ObserveEvent(sid, event.New(event.Done, event.DoneData{Outcome: "success"}), 1)
	r.n.ObserveEvent(sid, event.New(event.Done, event.DoneData{Outcome: "error"}), 0)
	_, msg = r.received(t)
	assert.Equal(t, notify.TurnEnded(sid, "error"), msg)
}

func TestSubscriptionChoosesItsKinds(t *testing.T) {
	r := newRig(t, nil)
	_, err := r.n.Subscribe(r.sub.Endpoint, notify.Keys{P256dh: r.sub.Keys.P256dh, Auth: r.sub.Keys.Auth}, []notify.Kind{notify.KindVM})
	require.NoError(t, err)
	assert.Equal(t, 0, r.n.Notify(notify.Approval(sid, "reset")))
	assert.Equal(t, 1, r.n.Notify(notify.VMChanged(notify.VMStopped)))
	_, msg := r.received(t)
	assert.Equal(t, notify.VMChanged(notify.VMStopped), msg)

	_, err = r.n.Subscribe(r.sub.Endpoint, notify.Keys{P256dh: r.sub.Keys.P256dh, Auth: r.sub.Keys.Auth}, []notify.Kind{"everything"})
	assert.ErrorIs(t, err, notify.ErrBadKinds)
}

func TestGoneRemovesTheSubscription(t *testing.T) {
	for _, code := range []int{404, 410} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			r := newRig(t, nil)
			r.push.Script(r.sub, pushdouble.Answer{Code: code})
			r.n.Notify(notify.Test())
			assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeGone}, r.next(t))
			assert.Empty(t, r.n.Status().Subscriptions)
			assert.Equal(t, 1, r.push.Hits(r.sub), "gone is not retried")
			// and it stays gone after a restart
			r.n.Close()
			n2, err := notify.New(notify.Config{Dir: r.dir})
			require.NoError(t, err)
			defer n2.Close()
			assert.Empty(t, n2.Status().Subscriptions)
		})
	}
}

func TestRetriesWithBackoffThenDelivers(t *testing.T) {
	r := newRig(t, nil)
	r.push.Script(r.sub, pushdouble.Answer{Code: 500}, pushdouble.Answer{Code: 429, RetryAfter: 0}, pushdouble.Answer{Code: 201})
	r.n.Notify(notify.Test())
	r.received(t)
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeOK}, r.next(t))
	assert.Equal(t, 3, r.push.Hits(r.sub))
	assert.Equal(t, 2.0, testutil.ToFloat64(retries(t, r.reg, "webpush")))
}

// retries finds breakglass_push_retries_total{channel}.
func retries(t *testing.T, reg *prometheus.Registry, channel string) prometheus.Collector {
	t.Helper()
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "breakglass_push_retries_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == channel {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
				}
			}
		}
	})
}

func TestFailingPushServiceIsReportedNotRetriedForever(t *testing.T) {
	r := newRig(t, func(c *notify.Config) { c.MaxAttempts = 3 })
	r.push.Script(r.sub, pushdouble.Answer{Code: 503})
	r.n.Notify(notify.Test())
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeFailed}, r.next(t))
	assert.Equal(t, 3, r.push.Hits(r.sub))
	last := r.n.Status().Subscriptions[0].Last
	require.NotNil(t, last)
	assert.Equal(t, notify.StatusFailed, last.Status)
	assert.Equal(t, 503, last.Code)
	assert.Contains(t, last.Error, "503")
	assert.Equal(t, 1.0, testutil.ToFloat64(counter(t, r.reg, "webpush", "failed")))

	// A 400 is the push service refusing this message: no retry.
	r.push.Script(r.sub, pushdouble.Answer{Code: 400})
	r.n.Notify(notify.Test())
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeFailed}, r.next(t))
	assert.Equal(t, 4, r.push.Hits(r.sub))
}

func TestHangingPushServiceTimesOutAndIsRetried(t *testing.T) {
	r := newRig(t, func(c *notify.Config) { c.Timeout = 200 * time.Millisecond })
	r.push.Script(r.sub, pushdouble.Answer{Hang: true}, pushdouble.Answer{Code: 201})
	r.n.Notify(notify.Test())
	r.received(t)
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeOK}, r.next(t))
	assert.Equal(t, 2, r.push.Hits(r.sub))
}

// TestSlowPushServiceNeverBlocksTheCaller: with the only worker stuck on a
// push service that never answers, Notify still returns at once; what does
// not fit the bounded queue is dropped, counted and shown.
func TestSlowPushServiceNeverBlocksTheCaller(t *testing.T) {
	r := newRig(t, func(c *notify.Config) {
		c.Workers, c.QueueSize, c.Timeout = 1, 2, time.Hour
	})
	r.push.Script(r.sub, pushdouble.Answer{Hang: true})
	queued := 0
	for range 10 {
		queued += r.n.Notify(notify.Test())
	}
	// One is in flight or queued; at most QueueSize+1 were accepted.
	assert.LessOrEqual(t, queued, 3)
	dropped := 0
	for dropped < 10-queued {
		d := r.next(t)
		require.Equal(t, notify.OutcomeDropped, d.outcome)
		dropped++
	}
	assert.Equal(t, float64(dropped), testutil.ToFloat64(counter(t, r.reg, "webpush", "dropped")))
	last := r.n.Status().Subscriptions[0].Last
	require.NotNil(t, last)
	assert.Equal(t, notify.StatusDropped, last.Status)
}

func TestNtfyGetsTheSameMessages(t *testing.T) {
	nt := ntfydouble.New("tok-123")
	defer nt.Close()
	r := newRig(t, func(c *notify.Config) {
		c.NtfyURL = nt.TopicURL("breakglass")
		c.NtfyToken = "tok-123"
		c.PublicURL = "https://bg.example"
	})
	msgs := []notify.Message{
		notify.Test(),
		notify.Approval(sid, "reset"),
		notify.Permission(sid, "Bash"),
		notify.TurnEnded(sid, "success"),
		notify.VMChanged(notify.VMStopped),
		notify.VMChanged(notify.VMRunning),
	}
	for _, m := range msgs {
		r.n.Notify(m)
		_, got := r.received(t)
		assert.Equal(t, m, got)
		select {
		case p := <-nt.Published():
			assert.Equal(t, "breakglass", p.Topic)
			assert.Equal(t, m.Title, p.Title)
			assert.Equal(t, m.Body, p.Body)
			assert.Equal(t, "https://bg.example"+m.URL, p.Click)
			assert.Equal(t, string(m.Kind), p.Tags)
		case rej := <-nt.Rejected():
			t.Fatalf("ntfy refused: %s", rej)
		case <-time.After(wait):
			t.Fatal("nothing published to ntfy")
		}
	}
	st := r.n.Status()
	require.NotNil(t, st.Ntfy)
	// The last delivery is recorded after the double answered.
	for i := 0; i < 2*len(msgs); i++ {
		r.next(t)
	}
	require.NotNil(t, r.n.Status().Ntfy.Last)
	assert.Equal(t, notify.StatusOK, r.n.Status().Ntfy.Last.Status)

	nt.FailWith(500)
	r.n.Notify(notify.Test())
	r.received(t)
	got := map[delivery]int{}
	got[r.next(t)]++
	got[r.next(t)]++
	assert.Equal(t, map[delivery]int{{"webpush", "ok"}: 1, {"ntfy", "failed"}: 1}, got)
	assert.Equal(t, 500, r.n.Status().Ntfy.Last.Code)
}

func TestNtfyWithoutTheTokenIsRefusedAndShown(t *testing.T) {
	nt := ntfydouble.New("right")
	defer nt.Close()
	r := newRig(t, func(c *notify.Config) { c.NtfyURL = nt.TopicURL("t"); c.NtfyToken = "wrong" })
	r.n.Notify(notify.VMChanged(notify.VMUnreachable))
	got := map[delivery]int{}
	got[r.next(t)]++
	got[r.next(t)]++
	assert.Equal(t, 1, got[delivery{"ntfy", "failed"}])
	assert.Equal(t, 403, r.n.Status().Ntfy.Last.Code)
}

func TestKeysAndSubscriptionsSurviveARestart(t *testing.T) {
	r := newRig(t, nil)
	key := r.n.PublicKey()
	r.n.Close()
	st, err := os.Stat(filepath.Join(r.dir, "vapid.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(r.dir, "subscriptions.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	n2, err := notify.New(notify.Config{Dir: r.dir})
	require.NoError(t, err)
	defer n2.Close()
	assert.Equal(t, key, n2.PublicKey())
	require.Len(t, n2.Status().Subscriptions, 1)
	assert.Equal(t, r.sub.Endpoint, n2.Status().Subscriptions[0].Endpoint)
	assert.Equal(t, notify.Kinds, n2.Status().Subscriptions[0].Events)
}

func TestVAPIDKeyReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	n, err := notify.New(notify.Config{Dir: dir})
	require.NoError(t, err)
	n.Close()
	require.NoError(t, os.Chmod(filepath.Join(dir, "vapid.json"), 0o644))
	_, err = notify.New(notify.Config{Dir: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "0600")
}

func TestCorruptSubscriptionsFileIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "subscriptions.json"), []byte("{not json"), 0o600))
	n, err := notify.New(notify.Config{Dir: dir})
	require.NoError(t, err)
	defer n.Close()
	assert.Empty(t, n.Status().Subscriptions)
	aside, err := filepath.Glob(filepath.Join(dir, "subscriptions.json.bad-*"))
	require.NoError(t, err)
	require.Len(t, aside, 1)
	b, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.Equal(t, "{not json", string(b))
}

func TestUnsubscribe(t *testing.T) {
	r := newRig(t, nil)
	assert.ErrorIs(t, r.n.Unsubscribe("https://push.example.com/other"), notify.ErrNotSubscribed)
	require.NoError(t, r.n.Unsubscribe(r.sub.Endpoint))
	assert.Empty(t, r.n.Status().Subscriptions)
	assert.Equal(t, 0, r.n.Notify(notify.Test()))
}

func TestSubscriptionLimit(t *testing.T) {
	r := newRig(t, nil)
	for i := 1; i < notify.MaxSubscriptions; i++ {
		s, err := r.push.Subscribe()
		require.NoError(t, err)
		_, err = r.n.Subscribe(s.Endpoint, notify.Keys{P256dh: s.Keys.P256dh, Auth: s.Keys.Auth}, nil)
		require.NoError(t, err)
	}
	s, err := r.push.Subscribe()
	require.NoError(t, err)
	_, err = r.n.Subscribe(s.Endpoint, notify.Keys{P256dh: s.Keys.P256dh, Auth: s.Keys.Auth}, nil)
	assert.ErrorIs(t, err, notify.ErrTooMany)
}

// TestBackoffDoesNotHoldAWorker: a push service that keeps failing waits
// out its backoff on a timer, not in the only worker, so another
// subscription's message goes out at once.
func TestBackoffDoesNotHoldAWorker(t *testing.T) {
	r := newRig(t, func(c *notify.Config) { c.Workers, c.Backoff = 1, time.Hour })
	good, err := r.push.Subscribe()
	require.NoError(t, err)
	_, err = r.n.Subscribe(good.Endpoint, notify.Keys{P256dh: good.Keys.P256dh, Auth: good.Keys.Auth}, nil)
	require.NoError(t, err)
	r.push.Script(r.sub, pushdouble.Answer{Code: 503})
	require.Equal(t, 2, r.n.Notify(notify.Test()))
	m, _ := r.received(t)
	assert.Equal(t, good.Endpoint, m.Endpoint)
	assert.Equal(t, delivery{notify.ChannelWebPush, notify.OutcomeOK}, r.next(t))
	assert.Equal(t, 1, r.push.Hits(r.sub), "the failing one waits for its retry")
}
