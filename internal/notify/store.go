package notify

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// Files under Config.Dir.
const (
	// VAPIDFile holds the VAPID private key: a secret, which the web keeps
	// out of the agent's reach.
	VAPIDFile = "vapid.json"
	subsFile  = "subscriptions.json"
)

// MaxSubscriptions bounds the stored subscriptions (a phone or two, a
// laptop: a few, not a flood).
const MaxSubscriptions = 32

// vapidKeys is vapid.json: the application server's key pair, base64url
// without padding (webpush-go's format; the public key is the 65-byte
// uncompressed P-256 point the browser's applicationServerKey takes).
type vapidKeys struct {
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key"`
}

// loadOrCreateVAPID reads dir/vapid.json, or makes a new key pair and writes
// it (0600) when there is none. A key file readable by others is refused.
func loadOrCreateVAPID(dir string) (vapidKeys, error) {
	path := filepath.Join(dir, VAPIDFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, pub, err := webpush.GenerateVAPIDKeys()
		if err != nil {
			return vapidKeys{}, fmt.Errorf("generate VAPID keys: %w", err)
		}
		k := vapidKeys{PublicKey: pub, PrivateKey: priv}
		b, _ := json.Marshal(k)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return vapidKeys{}, fmt.Errorf("create %s: %w", VAPIDFile, err)
		}
		_, werr := f.Write(b)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			_ = os.Remove(path)
			return vapidKeys{}, fmt.Errorf("write %s: %w", VAPIDFile, err)
		}
		return k, nil
	}
	if err != nil {
		return vapidKeys{}, fmt.Errorf("read %s: %w", VAPIDFile, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("stat %s: %w", VAPIDFile, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return vapidKeys{}, fmt.Errorf("%s is mode %v: it must be readable by its owner only (0600)", path, st.Mode().Perm())
	}
	var k vapidKeys
	if err := json.Unmarshal(raw, &k); err != nil {
		return vapidKeys{}, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(k.PublicKey)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("%s: public_key: %w", path, err)
	}
	if _, err := ecdh.P256().NewPublicKey(pub); err != nil {
		return vapidKeys{}, fmt.Errorf("%s: public_key is not a P-256 point: %w", path, err)
	}
	priv, err := base64.RawURLEncoding.DecodeString(k.PrivateKey)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("%s: private_key is not base64url", path)
	}
	pk, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil || string(pk.PublicKey().Bytes()) != string(pub) {
		return vapidKeys{}, fmt.Errorf("%s: private_key does not match public_key", path)
	}
	return k, nil
}

// Keys are a subscription's keys as PushSubscription.toJSON() gives them
// (base64url).
type Keys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// Delivery is the last attempt to deliver to a subscription (or to ntfy).
type Delivery struct {
	// Status is "ok", "failed" (after retries, or refused by the push
	// service) or "dropped" (the queue was full).
	Status string `json:"status"`
	// Code is the push service's HTTP status, when it answered.
	Code int `json:"code,omitempty"`
	// Error says why a delivery failed (never a key).
	Error string    `json:"error,omitempty"`
	Kind  Kind      `json:"kind"`
	At    time.Time `json:"at"`
}

// Delivery statuses.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusDropped = "dropped"
)

// Subscription is one browser's push subscription as stored.
type Subscription struct {
	Endpoint  string    `json:"endpoint"`
	Keys      Keys      `json:"keys"`
	Events    []Kind    `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	Last      *Delivery `json:"last_delivery,omitempty"`
}

func (s *Subscription) wants(k Kind) bool {
	if k == KindTest {
		return true
	}
	for _, e := range s.Events {
		if e == k {
			return true
		}
	}
	return false
}

// subsFileBody is subscriptions.json.
type subsFileBody struct {
	Subscriptions []*Subscription `json:"subscriptions"`
}

// loadSubscriptions reads dir/subscriptions.json. A file that does not
// decode is moved aside (so nothing is lost) and an error says where; the
// caller goes on with none.
func loadSubscriptions(dir string, now time.Time) ([]*Subscription, error) {
	path := filepath.Join(dir, subsFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subsFile, err)
	}
	var body subsFileBody
	if err := json.Unmarshal(raw, &body); err != nil {
		aside := path + ".bad-" + now.UTC().Format("20060102T150405Z")
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("%s is not valid JSON (%v) and could not be moved aside: %w", path, err, rerr)
		}
		return nil, fmt.Errorf("%s was not valid JSON (%v): moved to %s, starting with no subscriptions", path, err, aside)
	}
	var out []*Subscription
	for _, s := range body.Subscriptions {
		if s == nil {
			continue
		}
		if _, err := ValidateEndpoint(s.Endpoint); err != nil {
			continue
		}
		if checkKeys(s.Keys) != nil {
			continue
		}
		out = append(out, s)
		if len(out) == MaxSubscriptions {
			break
		}
	}
	return out, nil
}

// saveSubscriptions writes subs to dir/subscriptions.json (0600) through a
// temporary file and a rename, so a crash leaves the old or the new file.
func saveSubscriptions(dir string, subs []*Subscription) error {
	b, err := json.MarshalIndent(subsFileBody{Subscriptions: subs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode subscriptions: %w", err)
	}
	f, err := os.CreateTemp(dir, subsFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if err := errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("save subscriptions: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, subsFile)); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("save subscriptions: %w", err)
	}
	return nil
}

// ErrBadKeys is wrapped by every refusal of a subscription's keys.
var ErrBadKeys = errors.New("bad subscription keys")

// decodeB64 takes base64url with or without padding (browsers send it
// without; some libraries add it).
func decodeB64(s string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// checkKeys: p256dh is an uncompressed P-256 point, auth is 16 bytes
// (RFC 8291 §2, §3).
func checkKeys(k Keys) error {
	p, err := decodeB64(k.P256dh)
	if err != nil {
		return fmt.Errorf("%w: p256dh is not base64url", ErrBadKeys)
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return fmt.Errorf("%w: p256dh is not a P-256 public key", ErrBadKeys)
	}
	a, err := decodeB64(k.Auth)
	if err != nil || len(a) != 16 {
		return fmt.Errorf("%w: auth must be 16 bytes, base64url", ErrBadKeys)
	}
	return nil
}
