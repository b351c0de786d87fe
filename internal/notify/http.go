package notify

import (
	"errors"
	"fmt"
	"net/http"

	"breakglass/internal/api/wire"
)

// maxBody bounds the push routes' request bodies (a PushSubscription is
// well under 1 KiB; endpoints are capped at MaxEndpointBytes).
const maxBody = 8 << 10

// Error codes of the push routes' error bodies, besides package wire's
// (bad_request, not_found).
const (
	CodeBadEndpoint   wire.Code = "bad_endpoint"    // 400: not https to a public host name
	CodeBadKeys       wire.Code = "bad_keys"        // 400: keys are not a P-256 point and a 16-byte secret
	CodeTooMany       wire.Code = "too_many"        // 409: MaxSubscriptions reached
	CodeNothingToSend wire.Code = "nothing_to_send" // 409: no subscription and no ntfy
	CodeStoreFailed   wire.Code = "store_failed"    // 507: the subscriptions file could not be written
	CodeOff           wire.Code = "notifications_off"
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

// Routes are the push routes, operator routes all, for package api to
// mount behind the operator's authentication and same-origin check:
//
//	GET    /api/push/key
//	GET    /api/push/subscriptions
//	POST   /api/push/subscriptions
//	DELETE /api/push/subscriptions
//	POST   /api/push/test
func (n *Notifier) Routes() []wire.Route {
	return []wire.Route{
		{Method: http.MethodGet, Path: "/api/push/key", Operator: n.handleKey},
		{Method: http.MethodGet, Path: "/api/push/subscriptions", Operator: n.handleList},
		{Method: http.MethodPost, Path: "/api/push/subscriptions", Operator: n.handleSubscribe},
		{Method: http.MethodDelete, Path: "/api/push/subscriptions", Operator: n.handleUnsubscribe},
		{Method: http.MethodPost, Path: "/api/push/test", Operator: n.handleTest},
	}
}

// OffRoutes answer every push route with 503 notifications_off when
// notifications are off, saying why.
func OffRoutes(why string) []wire.Route {
	off := func(w http.ResponseWriter, _ *http.Request, _ wire.Principal) {
		wire.WriteError(w, wire.Errorf(http.StatusServiceUnavailable, CodeOff, "notifications are off: %s", why))
	}
	var out []wire.Route
	for _, rt := range (&Notifier{}).Routes() {
		out = append(out, wire.Route{Method: rt.Method, Path: rt.Path, Operator: off})
	}
	return out
}

func (n *Notifier) handleKey(w http.ResponseWriter, _ *http.Request, _ wire.Principal) {
	wire.WriteJSON(w, http.StatusOK, KeyResponse{PublicKey: n.PublicKey(), Kinds: Kinds, Ntfy: n.NtfyConfigured()})
}

func (n *Notifier) handleList(w http.ResponseWriter, _ *http.Request, _ wire.Principal) {
	wire.WriteJSON(w, http.StatusOK, n.Status())
}

func (n *Notifier) handleSubscribe(w http.ResponseWriter, r *http.Request, _ wire.Principal) {
	var req SubscribeRequest
	if err := wire.ReadJSON(w, r, maxBody, &req, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	s, err := n.Subscribe(req.Endpoint, req.Keys, req.Events)
	switch {
	case err == nil:
		wire.WriteJSON(w, http.StatusCreated, SubscriptionStatus{Endpoint: s.Endpoint, Events: s.Events, CreatedAt: s.CreatedAt, Last: s.Last})
	case errors.Is(err, ErrBadEndpoint):
		fail(w, http.StatusBadRequest, CodeBadEndpoint, err.Error()+": push endpoints must be https to a public host name")
	case errors.Is(err, ErrBadKeys):
		fail(w, http.StatusBadRequest, CodeBadKeys, err.Error())
	case errors.Is(err, ErrBadKinds):
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
	case errors.Is(err, ErrTooMany):
		fail(w, http.StatusConflict, CodeTooMany, fmt.Sprintf("%v: at most %d; remove one first", err, MaxSubscriptions))
	default:
		fail(w, http.StatusInsufficientStorage, CodeStoreFailed, "the subscription could not be saved")
	}
}

func (n *Notifier) handleUnsubscribe(w http.ResponseWriter, r *http.Request, _ wire.Principal) {
	var req UnsubscribeRequest
	if err := wire.ReadJSON(w, r, maxBody, &req, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	err := n.Unsubscribe(req.Endpoint)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrNotSubscribed):
		fail(w, http.StatusNotFound, wire.CodeNotFound, err.Error())
	default:
		fail(w, http.StatusInsufficientStorage, CodeStoreFailed, "the change could not be saved")
	}
}

func (n *Notifier) handleTest(w http.ResponseWriter, _ *http.Request, _ wire.Principal) {
	st := n.Status()
	if len(st.Subscriptions) == 0 && st.Ntfy == nil {
		fail(w, http.StatusConflict, CodeNothingToSend, "no push subscription and no ntfy topic: enable notifications first")
		return
	}
	wire.WriteJSON(w, http.StatusAccepted, TestResponse{Queued: n.Notify(Test())})
}

func fail(w http.ResponseWriter, status int, code wire.Code, msg string) {
	wire.WriteError(w, &wire.Error{Status: status, Code: code, Message: msg})
}
