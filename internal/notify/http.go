package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/mux"
)

// maxBody bounds the push routes' request bodies (a PushSubscription is
// well under 1 KiB; endpoints are capped at MaxEndpointBytes).
const maxBody = 8 << 10

// turnTokenHeader is the agent's per-turn token header: never accepted on
// these operator routes.
const turnTokenHeader = "X-Breakglass-Turn-Token"

// Error codes of the push routes' error bodies ({"error","code"}).
const (
	CodeBadRequest    = "bad_request"     // 400: malformed body
	CodeBadEndpoint   = "bad_endpoint"    // 400: not https to a public host name
	CodeBadKeys       = "bad_keys"        // 400: keys are not a P-256 point and a 16-byte secret
	CodeTooMany       = "too_many"        // 409: MaxSubscriptions reached
	CodeNotFound      = "not_found"       // 404: no such subscription
	CodeNothingToSend = "nothing_to_send" // 409: no subscription and no ntfy
	CodeForbidden     = "forbidden"       // 403: a turn token on an operator route
	CodeStoreFailed   = "store_failed"    // 507: the subscriptions file could not be written
)

// SubscribeRequest is POST /api/push/subscriptions: the browser's
// PushSubscription.toJSON(), plus the kinds of messages wanted (empty: all).
type SubscribeRequest struct {
	Endpoint       string   `json:"endpoint"`
	ExpirationTime *float64 `json:"expirationTime"`
	Keys           Keys     `json:"keys"`
	Events         []Kind   `json:"events,omitempty"`
}

// UnsubscribeRequest is DELETE /api/push/subscriptions.
type UnsubscribeRequest struct {
	Endpoint string `json:"endpoint"`
}

// KeyResponse is GET /api/push/key.
type KeyResponse struct {
	// PublicKey is the VAPID public key, base64url: the page passes it to
	// PushManager.subscribe as applicationServerKey.
	PublicKey string `json:"public_key"`
	// Kinds are the kinds a subscription may choose.
	Kinds []Kind `json:"kinds"`
	// Ntfy says whether messages also go to an ntfy topic.
	Ntfy bool `json:"ntfy"`
}

// TestResponse is POST /api/push/test's 202.
type TestResponse struct {
	Queued int `json:"queued"`
}

// Register adds the push routes to r, which must sit behind the operator's
// authentication and same-origin check:
//
//	GET    /api/push/key
//	GET    /api/push/subscriptions
//	POST   /api/push/subscriptions
//	DELETE /api/push/subscriptions
//	POST   /api/push/test
func (n *Notifier) Register(r *mux.Router) {
	r.Handle("/api/push/key", n.guard(n.handleKey)).Methods(http.MethodGet)
	r.Handle("/api/push/subscriptions", n.guard(n.handleList)).Methods(http.MethodGet)
	r.Handle("/api/push/subscriptions", n.guard(n.handleSubscribe)).Methods(http.MethodPost)
	r.Handle("/api/push/subscriptions", n.guard(n.handleUnsubscribe)).Methods(http.MethodDelete)
	r.Handle("/api/push/test", n.guard(n.handleTest)).Methods(http.MethodPost)
}

func (n *Notifier) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Values(turnTokenHeader)) > 0 {
			writeError(w, http.StatusForbidden, CodeForbidden, "a turn token is not accepted on the operator's routes")
			return
		}
		h(w, r)
	})
}

func (n *Notifier) handleKey(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, KeyResponse{PublicKey: n.PublicKey(), Kinds: Kinds, Ntfy: n.NtfyConfigured()})
}

func (n *Notifier) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

func (n *Notifier) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	var req SubscribeRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	s, err := n.Subscribe(req.Endpoint, req.Keys, req.Events)
	switch {
	case err == nil:
		writeJSON(w, http.StatusCreated, SubscriptionStatus{Endpoint: s.Endpoint, Events: s.Events, CreatedAt: s.CreatedAt, Last: s.Last})
	case errors.Is(err, ErrBadEndpoint):
		writeError(w, http.StatusBadRequest, CodeBadEndpoint, err.Error()+": push endpoints must be https to a public host name")
	case errors.Is(err, ErrBadKeys):
		writeError(w, http.StatusBadRequest, CodeBadKeys, err.Error())
	case errors.Is(err, ErrBadKinds):
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, ErrTooMany):
		writeError(w, http.StatusConflict, CodeTooMany, fmt.Sprintf("%v: at most %d; remove one first", err, MaxSubscriptions))
	default:
		writeError(w, http.StatusInsufficientStorage, CodeStoreFailed, "the subscription could not be saved")
	}
}

func (n *Notifier) handleUnsubscribe(w http.ResponseWriter, r *http.Request) {
	var req UnsubscribeRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	err := n.Unsubscribe(req.Endpoint)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrNotSubscribed):
		writeError(w, http.StatusNotFound, CodeNotFound, err.Error())
	default:
		writeError(w, http.StatusInsufficientStorage, CodeStoreFailed, "the change could not be saved")
	}
}

func (n *Notifier) handleTest(w http.ResponseWriter, _ *http.Request) {
	st := n.Status()
	if len(st.Subscriptions) == 0 && st.Ntfy == nil {
		writeError(w, http.StatusConflict, CodeNothingToSend, "no push subscription and no ntfy topic: enable notifications first")
		return
	}
	writeJSON(w, http.StatusAccepted, TestResponse{Queued: n.Notify(Test())})
}

// decodeBody reads r's JSON body into v, at most maxBody bytes, with no
// unknown fields and nothing after the value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body larger than %d bytes", maxBody)
		}
		return errors.New("body unreadable")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("body required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

// errorBody is every error answer: a message and a code the UI can switch on.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
