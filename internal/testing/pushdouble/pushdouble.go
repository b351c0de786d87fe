package pushdouble

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/hkdf"
)

// MaxJWTLifetime is the longest exp RFC 8292 §2 allows ahead of now.
const MaxJWTLifetime = 24 * time.Hour

// Message is a push the service accepted and decrypted.
type Message struct {
	// Endpoint is the subscription's endpoint.
	Endpoint string
	// Plaintext is the decrypted payload.
	Plaintext []byte
	// Subject, Audience and Expiry are the JWT's sub, aud and exp.
	Subject  string
	Audience string
	Expiry   time.Time
	// TTL and Urgency are the request's headers.
	TTL     string
	Urgency string
}

// Rejection is a request the service refused, with why.
type Rejection struct {
	Endpoint string
	Reason   string
}

// Subscription is what a browser's PushManager.subscribe gives the page
// (PushSubscription.toJSON()), with the private half the browser keeps.
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`

	priv *ecdh.PrivateKey
	auth []byte
}

// Answer is how the service answers a delivery to a subscription: a
// status code, and optionally a Retry-After in seconds. Hang makes it wait
// until the request is cancelled (a push service that never answers).
type Answer struct {
	Code       int
	RetryAfter int
	Hang       bool
}

// Server is the push service.
type Server struct {
	srv       *httptest.Server
	vapidKey  []byte // the application server's public key expected in k; nil: any
	now       func() time.Time
	delivered chan Message
	rejected  chan Rejection

	// mu protects the following.
	mu      sync.Mutex
	subs    map[string]*Subscription // by path
	answers map[string][]Answer      // scripted, by path; the last one repeats
	hits    map[string]int
}

// New starts a push service on 127.0.0.1:0; Close stops it. vapidPublicKey
// (base64url, as the page's applicationServerKey) is the key every JWT
// must be signed with; empty accepts any key that verifies its own JWT.
func New(vapidPublicKey string) (*Server, error) {
	s := &Server{
		now:       time.Now,
		delivered: make(chan Message, 256),
		rejected:  make(chan Rejection, 256),
		subs:      map[string]*Subscription{},
		answers:   map[string][]Answer{},
		hits:      map[string]int{},
	}
	if vapidPublicKey != "" {
		k, err := base64.RawURLEncoding.DecodeString(vapidPublicKey)
		if err != nil {
			return nil, fmt.Errorf("vapid public key: %w", err)
		}
		s.vapidKey = k
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s, nil
}

// Close stops the server (a hanging answer is released).
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// URL is the service's base URL.
func (s *Server) URL() string { return s.srv.URL }

// Delivered receives every accepted, decrypted message.
func (s *Server) Delivered() <-chan Message { return s.delivered }

// Rejected receives every refused request.
func (s *Server) Rejected() <-chan Rejection { return s.rejected }

// Subscribe makes a subscription with fresh keys, as a browser would.
func (s *Server) Subscribe() (*Subscription, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	auth := make([]byte, 16)
	if _, err := rand.Read(auth); err != nil {
		return nil, err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	path := "/push/" + base64.RawURLEncoding.EncodeToString(id)
	sub := &Subscription{Endpoint: s.srv.URL + path, priv: priv, auth: auth}
	sub.Keys.P256dh = base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes())
	sub.Keys.Auth = base64.RawURLEncoding.EncodeToString(auth)
	s.mu.Lock()
	s.subs[path] = sub
	s.mu.Unlock()
	return sub, nil
}

// Script sets the answers to sub's next deliveries, in order; the last one
// repeats. With no script a delivery is answered 201.
func (s *Server) Script(sub *Subscription, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[pathOf(sub.Endpoint)] = answers
}

// Hits is how many requests reached sub's endpoint.
func (s *Server) Hits(sub *Subscription) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[pathOf(sub.Endpoint)]
}

func pathOf(endpoint string) string {
	i := strings.Index(endpoint, "/push/")
	if i < 0 {
		return endpoint
	}
	return endpoint[i:]
}

func (s *Server) reject(w http.ResponseWriter, endpoint string, code int, reason string) {
	select {
	case s.rejected <- Rejection{Endpoint: endpoint, Reason: reason}:
	default:
	}
	http.Error(w, reason, code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	endpoint := s.srv.URL + r.URL.Path
	s.mu.Lock()
	sub := s.subs[r.URL.Path]
	s.hits[r.URL.Path]++
	var ans Answer
	if script := s.answers[r.URL.Path]; len(script) > 0 {
		ans = script[0]
		if len(script) > 1 {
			s.answers[r.URL.Path] = script[1:]
		}
	}
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		s.reject(w, endpoint, http.StatusMethodNotAllowed, "POST only")
		return
	}
	if sub == nil {
		s.reject(w, endpoint, http.StatusNotFound, "no such subscription")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		s.reject(w, endpoint, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	if ans.Hang {
		<-r.Context().Done()
		return
	}
	claims, err := s.checkVAPID(r.Header.Get("Authorization"), s.srv.URL)
	if err != nil {
		s.reject(w, endpoint, http.StatusUnauthorized, "vapid: "+err.Error())
		return
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" {
		s.reject(w, endpoint, http.StatusBadRequest, "Content-Encoding is not aes128gcm")
		return
	}
	if r.Header.Get("TTL") == "" {
		s.reject(w, endpoint, http.StatusBadRequest, "no TTL header (RFC 8030 §5.2)")
		return
	}
	plain, err := Decrypt(body, sub.priv, sub.auth)
	if err != nil {
		s.reject(w, endpoint, http.StatusBadRequest, "decrypt: "+err.Error())
		return
	}
	if ans.Code != 0 && (ans.Code < 200 || ans.Code > 299) {
		if ans.RetryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(ans.RetryAfter))
		}
		http.Error(w, http.StatusText(ans.Code), ans.Code)
		return
	}
	s.delivered <- Message{
		Endpoint:  endpoint,
		Plaintext: plain,
		Subject:   claims.Sub,
		Audience:  claims.Aud,
		Expiry:    time.Unix(claims.Exp, 0),
		TTL:       r.Header.Get("TTL"),
		Urgency:   r.Header.Get("Urgency"),
	}
	w.WriteHeader(http.StatusCreated)
}

type jwtClaims struct {
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Sub string `json:"sub"`
}

// checkVAPID verifies `vapid t=<jwt>, k=<key>` (RFC 8292 §3): the JWT is
// ES256 over the P-256 key k, aud is the push resource's origin, exp is in
// the future and no more than 24 h ahead, sub is a contact URI.
func (s *Server) checkVAPID(header, origin string) (jwtClaims, error) {
	var c jwtClaims
	rest, ok := strings.CutPrefix(header, "vapid ")
	if !ok {
		return c, errors.New("authorization scheme is not vapid")
	}
	params := map[string]string{}
	for _, p := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return c, errors.New("malformed parameter")
		}
		params[k] = v
	}
	key, err := base64.RawURLEncoding.DecodeString(params["k"])
	if err != nil {
		return c, errors.New("k is not base64url")
	}
	if s.vapidKey != nil && !bytes.Equal(key, s.vapidKey) {
		return c, errors.New("k is not the application server's key")
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), key) //nolint:staticcheck // ecdsa.PublicKey needs x, y
	if x == nil {
		return c, errors.New("k is not a P-256 point")
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	parts := strings.Split(params["t"], ".")
	if len(parts) != 3 {
		return c, errors.New("t is not a JWT")
	}
	hdrRaw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return c, errors.New("JWT header is not base64url")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(hdrRaw, &hdr); err != nil || hdr.Alg != "ES256" {
		return c, fmt.Errorf("JWT alg is %q, not ES256", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return c, errors.New("JWT signature is not 64 bytes (r||s)")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, ss) {
		return c, errors.New("JWT signature does not verify with k")
	}
	claimsRaw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, errors.New("JWT claims are not base64url")
	}
	if err := json.Unmarshal(claimsRaw, &c); err != nil {
		return c, errors.New("JWT claims are not JSON")
	}
	if c.Aud != origin {
		return c, fmt.Errorf("aud %q is not the endpoint's origin %q", c.Aud, origin)
	}
	now := s.now()
	exp := time.Unix(c.Exp, 0)
	if !exp.After(now) {
		return c, errors.New("JWT expired")
	}
	if exp.Sub(now) > MaxJWTLifetime {
		return c, fmt.Errorf("exp is %v ahead, over 24 h", exp.Sub(now).Round(time.Second))
	}
	if !strings.HasPrefix(c.Sub, "mailto:") && !strings.HasPrefix(c.Sub, "https:") {
		return c, fmt.Errorf("sub %q is not a mailto: or https: URI", c.Sub)
	}
	return c, nil
}

// Decrypt opens an aes128gcm body (RFC 8188 §2 header, RFC 8291 §3.4 key
// derivation) with the user agent's private key and auth secret. Only a
// single record is accepted, as Web Push sends.
func Decrypt(body []byte, uaPriv *ecdh.PrivateKey, authSecret []byte) ([]byte, error) {
	// Header: salt(16) | rs(4) | idlen(1) | keyid(idlen).
	if len(body) < 21 {
		return nil, errors.New("shorter than the header")
	}
	salt := body[:16]
	rs := binary.BigEndian.Uint32(body[16:20])
	idlen := int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("keyid is %d bytes, not the 65-byte application server key", idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid is not a P-256 point: %w", err)
	}
	ciphertext := body[21+idlen:]
	if rs < 18 || uint32(len(ciphertext)) > rs {
		return nil, fmt.Errorf("more than one record (rs %d, %d bytes)", rs, len(ciphertext))
	}
	shared, err := uaPriv.ECDH(asPub)
	if err != nil {
		return nil, fmt.Errorf("ecdh: %w", err)
	}
	// RFC 8291 §3.3: IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32).
	info := append([]byte("WebPush: info\x00"), uaPriv.PublicKey().Bytes()...)
	info = append(info, asPub.Bytes()...)
	ikm := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, shared, authSecret, info), ikm); err != nil {
		return nil, err
	}
	// RFC 8188 §2.2, §2.3: the content key and nonce.
	cek := make([]byte, 16)
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, salt, []byte("Content-Encoding: aes128gcm\x00")), cek); err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, salt, []byte("Content-Encoding: nonce\x00")), nonce); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// The last record ends with 0x02 then zero padding (RFC 8188 §2).
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:i], nil
}
