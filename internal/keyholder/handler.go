package keyholder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"breakglass/internal/ipc"
	"breakglass/internal/presence"
	"breakglass/internal/verbs"
)

// maxLoggedPath bounds how much of a request path an audit line quotes.
const maxLoggedPath = 128

// defaultAnswerTimeout bounds writing an answer once it is known, so a
// caller that stops reading cannot hold the handler, and with it the
// request's audit line, forever.
const defaultAnswerTimeout = 10 * time.Second

// Handler returns the verb API: exactly the routes of ipc (healthz, verbs,
// one verb, metrics); everything else is refused. It must be served by
// ipc.Serve: a request without the caller's credentials is refused.
func (k *Keyholder) Handler() http.Handler {
	return &handler{k: k, metrics: promhttp.HandlerFor(k.gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})}
}

type handler struct {
	k       *Keyholder
	metrics http.Handler
}

// audit is the one line every request gets.
type audit struct {
	route    string
	verb     string
	actor    string
	outcome  Outcome
	exitCode *int
	trunc    bool
	err      error
	// operator is whose passkey signed (verb, login); reason a presence
	// refusal's code; extra more fields of the route's own.
	operator string
	reason   presence.Reason
	extra    []any
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.k.now()
	sw := &statusWriter{ResponseWriter: w}
	h.answerBy(sw)
	a := &audit{}
	cred, ok := ipc.PeerCred(r.Context())
	switch {
	case !ok:
		a.err = errors.New("no peer credentials")
		writeRefusal(sw, http.StatusForbidden, ReasonNoPeerCred, "no peer credentials")
	default:
		h.route(sw, r, cred, a)
	}
	h.log(r, sw.status, cred, a, start)
}

// route dispatches on the escaped path, so percent-encoded separators and
// dot segments are seen as sent and never normalised into a route.
func (h *handler) route(w http.ResponseWriter, r *http.Request, cred ipc.Cred, a *audit) {
	path := r.URL.EscapedPath()
	switch {
	case r.URL.RawQuery != "" || r.URL.ForceQuery:
		a.route, a.err = "bad", errors.New("query string")
		writeRefusal(w, http.StatusBadRequest, ReasonQuery, "query strings are not accepted")
	case !cleanPath(path):
		a.route, a.err = "bad", errors.New("malformed path")
		writeRefusal(w, http.StatusBadRequest, ReasonMalformedPath, "malformed path: no empty, '.' or '..' segments")
	case path == ipc.PathHealthz:
		a.route = "healthz"
		if methodIs(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, ipc.Health{OK: true})
		}
	case path == ipc.PathVerbs:
		a.route = "verbs"
		if methodIs(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, h.k.verbList())
		}
	case path == ipc.PathMetrics:
		a.route = "metrics"
		if methodIs(w, r, http.MethodGet) {
			h.metrics.ServeHTTP(w, r)
		}
	case strings.HasPrefix(path, ipc.PathVerbPrefix):
		a.route = "verb"
		if methodIs(w, r, http.MethodPost) {
			h.runVerb(w, r, strings.TrimPrefix(path, ipc.PathVerbPrefix), cred, a)
		}
	case path == ipc.PathChallenges:
		a.route = "challenge"
		if methodIs(w, r, http.MethodPost) {
			h.challenge(w, r, a)
		}
	case path == ipc.PathLogins:
		a.route = "login"
		if methodIs(w, r, http.MethodPost) {
			h.login(w, r, a)
		}
	case path == ipc.PathEnrollments:
		a.route = "enrollment"
		if methodIs(w, r, http.MethodPost) {
			h.beginEnrollment(w, r, a)
		}
	case strings.HasPrefix(path, ipc.PathEnrollmentPrefix):
		a.route = "enrollment"
		if methodIs(w, r, http.MethodPost) {
			h.finishEnrollment(w, r, strings.TrimPrefix(path, ipc.PathEnrollmentPrefix), a)
		}
	default:
		a.route = "unknown"
		writeRefusal(w, http.StatusNotFound, ReasonNotFound, "not found")
	}
}

// runVerb answers POST /v1/verbs/{verb}. The verb is checked before the body
// is read and long before anything is dialled.
func (h *handler) runVerb(w http.ResponseWriter, r *http.Request, segment string, cred ipc.Cred, a *audit) {
	a.verb = invalidVerb
	// WARNING: the segment is the escaped path as sent and is matched byte
	// for byte; it is never percent-decoded, so "%72eset" is not reset
	// (TestPercentEncodedVerbNeverRuns).
	if strings.Contains(segment, "%") {
		h.k.metrics.verbs.WithLabelValues(invalidVerb, string(OutcomeRefused)).Inc()
		a.outcome, a.err = OutcomeRefused, errors.New("percent-encoded verb")
		writeRefusal(w, http.StatusBadRequest, ReasonPercent, "a verb is never percent-encoded: '%' is refused in the verb segment")
		return
	}
	v, err := verbs.Parse(segment)
	if err != nil {
		h.k.metrics.verbs.WithLabelValues(invalidVerb, string(OutcomeRefused)).Inc()
		a.outcome, a.err = OutcomeRefused, err
		writeRefusal(w, http.StatusBadRequest, ReasonUnknownVerb, err.Error())
		return
	}
	a.verb = string(v.Name)
	req, status, err := decodeRunRequest(w, r, v.MaxBody)
	if err != nil {
		h.k.metrics.verbs.WithLabelValues(a.verb, string(OutcomeBadRequest)).Inc()
		a.outcome, a.err = OutcomeBadRequest, err
		writeRefusal(w, status, reasonOf(status, err), err.Error())
		return
	}
	a.actor = req.Actor
	if err := v.CheckArgs(req.Args); err != nil {
		// Only guest-exec takes args, and only an argv within the limits.
		h.k.metrics.verbs.WithLabelValues(a.verb, string(OutcomeBadRequest)).Inc()
		a.outcome, a.err = OutcomeBadRequest, err
		writeRefusal(w, http.StatusBadRequest, ReasonBadArgs, err.Error())
		return
	}
	res, err := h.k.RunArgs(a.verb, req.Args, Caller{Actor: req.Actor, Cred: cred, Presence: req.Presence})
	// WARNING: the verb may have run for minutes; the answer gets its own
	// time from now, and no more (TestAuditLineWhenCallerStopsReading).
	h.answerBy(w)
	a.outcome = outcomeOf(res.ExitCode, err)
	a.operator = res.Operator
	if h.k.presence == nil && verbMutating(a.verb) {
		a.extra = append(a.extra, "presence", string(presence.ModeOff))
	}
	if writePresenceError(w, err, a) {
		return
	}
	if err != nil {
		a.err = err
		status, msg := h.k.errorAnswer(err)
		writeRefusal(w, status, reasonOf(status, err), msg)
		return
	}
	a.exitCode, a.trunc = &res.ExitCode, res.Truncated
	writeJSON(w, http.StatusOK, res)
}

// answerBy gives the answer written to w the answer timeout from now.
func (h *handler) answerBy(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.k.answerTimeout))
}

// errorAnswer maps a Run error to its status and the plain message the
// caller gets; the detail goes to the audit line only.
func (k *Keyholder) errorAnswer(err error) (int, string) {
	switch {
	case errors.Is(err, verbs.ErrUnknown):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrBusy):
		return http.StatusConflict, "a mutating verb is already running; try again when it has finished"
	case errors.Is(err, ErrTooMany):
		return http.StatusTooManyRequests, fmt.Sprintf("too many verbs running (%d); try again when one has finished", MaxConcurrentVerbs)
	case errors.Is(err, ErrOutputTooLarge):
		return http.StatusBadGateway, "the Proxmox host's answer is larger than this verb's cap; refused, not cut"
	case errors.Is(err, ErrBadOutput):
		return http.StatusBadGateway, "the Proxmox host's answer is not of this verb's content type"
	case errors.Is(err, verbs.ErrArgs):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrHostKeyMismatch):
		return http.StatusBadGateway, "host key mismatch: the Proxmox host's key is not the one pinned in known_hosts; nothing was run"
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable, "the keyholder is shutting down"
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout, fmt.Sprintf("timed out after %v waiting for the Proxmox host", k.timeout)
	case errors.Is(err, ErrUnreachable):
		return http.StatusGatewayTimeout, "the Proxmox host is unreachable"
	}
	return http.StatusBadGateway, "ssh to the Proxmox host failed"
}

// decodeRunRequest reads the optional {"actor":…} body: bounded, strict
// (decodeStrict: unknown fields, duplicate keys, wrong-case keys and
// trailing data refused), actor printable and short.
func decodeRunRequest(w http.ResponseWriter, r *http.Request, maxBody int64) (ipc.RunRequest, int, error) {
	var req ipc.RunRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: larger than %d bytes", errBodyTooLarge, maxBody)
		}
		return req, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return req, 0, nil
	}
	if err := decodeStrict(b, &req); err != nil {
		return req, http.StatusBadRequest, fmt.Errorf("malformed body: %w", err)
	}
	if err := checkActor(req.Actor); err != nil {
		return req, http.StatusBadRequest, fmt.Errorf("%w: %w", errBadActor, err)
	}
	return req, 0, nil
}

// decodeBody reads a JSON body of at most limit bytes into v, strictly:
// unknown fields and trailing data are refused. An empty body leaves v as
// it is.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) (int, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("%w: larger than %d bytes", errBodyTooLarge, limit)
		}
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return 0, nil
	}
	if err := decodeStrict(b, v); err != nil {
		return http.StatusBadRequest, fmt.Errorf("malformed body: %w", err)
	}
	return 0, nil
}

// checkActor refuses actors that would make audit lines misleading.
func checkActor(s string) error {
	if len(s) > ipc.MaxActorLen {
		return fmt.Errorf("actor longer than %d bytes", ipc.MaxActorLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("actor is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return errors.New("actor holds control or format characters")
		}
	}
	return nil
}

// cleanPath reports whether p is an absolute path with no empty, "." or
// ".." segment, as sent (percent-encoded forms are never decoded: runVerb
// refuses a '%' in the verb segment).
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// methodIs answers 405 unless r uses method.
func methodIs(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeRefusal(w, http.StatusMethodNotAllowed, ReasonMethod, "method not allowed")
	return false
}

// verbList is the GET /v1/verbs answer.
func (k *Keyholder) verbList() ipc.VerbList {
	vl := ipc.VerbList{VMID: k.vmid, Presence: string(k.PresenceMode())}
	for _, v := range verbs.All() {
		vl.Verbs = append(vl.Verbs, ipc.VerbInfo{Name: string(v.Name), Mutating: v.Mutating})
	}
	return vl
}

// log writes the request's audit line: one per request, whatever happened.
func (h *handler) log(r *http.Request, status int, cred ipc.Cred, a *audit, start time.Time) {
	path := r.URL.EscapedPath()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath] + "…"
	}
	fields := []any{
		"method", r.Method, "path", path, "route", a.route, "status", status,
		"uid", cred.UID, "gid", cred.GID, "pid", cred.PID,
		"duration_ms", h.k.now().Sub(start).Milliseconds(),
	}
	if a.route == "verb" {
		fields = append(fields, "verb", a.verb, "actor", a.actor, "outcome", string(a.outcome))
		if a.exitCode != nil {
			fields = append(fields, "exit_code", *a.exitCode, "truncated", a.trunc)
		}
	}
	if a.operator != "" {
		fields = append(fields, "operator", a.operator)
	}
	if a.reason != "" {
		fields = append(fields, "reason", string(a.reason))
	}
	fields = append(fields, a.extra...)
	if a.err != nil {
		fields = append(fields, "error", a.err.Error())
	}
	if status >= 400 {
		h.k.log.Warn("request", fields...)
		return
	}
	h.k.log.Info("request", fields...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes a refusal whose reason code follows from its status
// alone; writeRefusal names a more precise one.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeRefusal(w, status, reasonOf(status, nil), msg)
}

// writeRefusal writes every non-200 answer: the plain message and its
// machine-readable reason code.
func writeRefusal(w http.ResponseWriter, status int, reason Reason, msg string) {
	writeJSON(w, status, ipc.ErrorBody{Error: msg, Reason: string(reason)})
}

// writePresenceError answers 403 {"error":"operator presence: …","reason"}
// when err is a presence refusal, and reports whether it did.
func writePresenceError(w http.ResponseWriter, err error, a *audit) bool {
	var pe *presence.Error
	if !errors.As(err, &pe) {
		return false
	}
	a.err, a.reason = err, pe.Reason
	if pe.Detail != nil {
		a.err = fmt.Errorf("%w (%w)", err, pe.Detail)
	}
	writeJSON(w, http.StatusForbidden, ipc.ErrorBody{Error: pe.Error(), Reason: string(pe.Reason)})
	return true
}

// verbMutating reports whether name is a mutating verb.
func verbMutating(name string) bool {
	v, err := verbs.Parse(name)
	return err == nil && v.Mutating
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
