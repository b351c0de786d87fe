package passkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"breakglass/internal/ipc"
)

// Flags of authenticator data.
const (
	FlagUP = 1 << 0
	FlagUV = 1 << 2
	FlagAT = 1 << 6
)

// coreDet encodes CBOR deterministically (RFC 8949 §4.2.1), so a key's
// bytes are the same every time.
var coreDet, _ = cbor.CoreDetEncOptions().EncMode()

// Authenticator is one ES256 passkey for one RP ID and origin. It is safe
// for concurrent use.
type Authenticator struct {
	// RPID and Origin are what an honest browser on the site would use.
	RPID   string
	Origin string
	// ID is the credential id.
	ID  []byte
	key *ecdsa.PrivateKey

	// Counting makes the signature counter go up by one per assertion
	// (a security key); false keeps it at zero (a synced passkey).
	Counting bool

	mu    sync.Mutex
	count uint32
}

// New returns a fresh passkey for rpID used from origin.
func New(rpID, origin string) *Authenticator {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Authenticator{RPID: rpID, Origin: origin, ID: id, key: k}
}

// PKCS8 is the private key in PKCS #8 form (what the DevTools protocol's
// WebAuthn.addCredential takes), so a browser's virtual authenticator can
// hold the same passkey.
func (a *Authenticator) PKCS8() []byte {
	b, err := x509.MarshalPKCS8PrivateKey(a.key)
	if err != nil {
		panic(err)
	}
	return b
}

// CredentialID is the credential id, base64url.
func (a *Authenticator) CredentialID() string { return b64(a.ID) }

// COSEKey is the public key as a COSE_Key (EC2, ES256, P-256).
func (a *Authenticator) COSEKey() []byte {
	var x, y [32]byte
	a.key.X.FillBytes(x[:])
	a.key.Y.FillBytes(y[:])
	b, err := coreDet.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x[:], -3: y[:]})
	if err != nil {
		panic(err)
	}
	return b
}

// Line is the operators-file line enrolling this passkey for name.
func (a *Authenticator) Line(name string) string {
	return name + " " + b64(a.ID) + " " + b64(a.COSEKey())
}

// Tweak makes an assertion or registration wrong in one way; the zero
// Tweak is an honest one.
type Tweak struct {
	// Type replaces the clientDataJSON type.
	Type string
	// Origin replaces the origin.
	Origin string
	// RPID replaces the RP ID whose hash goes into authenticator data.
	RPID string
	// Challenge replaces the challenge (base64url) in clientDataJSON.
	Challenge string
	// Flags, when non-nil, replaces UP|UV.
	Flags *byte
	// SignCount, when non-nil, replaces the counter.
	SignCount *uint32
	// CredentialID replaces the credential id the answer names.
	CredentialID []byte
	// BadSignature flips a bit of the signed data before signing.
	BadSignature bool
	// CrossOrigin sets clientDataJSON's crossOrigin (a page framed by
	// another origin).
	CrossOrigin bool
}

// Flags returns a pointer to f, for Tweak.Flags.
func Flags(f byte) *byte { return &f }

// Count returns a pointer to n, for Tweak.SignCount.
func Count(n uint32) *uint32 { return &n }

// Get answers a keyholder challenge (its challenge_id and base64url
// challenge) as navigator.credentials.get would, changed by the tweaks.
func (a *Authenticator) Get(ch ipc.Challenge, tweaks ...Tweak) ipc.Presence {
	t := merge(tweaks)
	typ, origin, rpID, challenge := or(t.Type, "webauthn.get"), or(t.Origin, a.Origin), or(t.RPID, a.RPID), or(t.Challenge, ch.Challenge)
	cdj := clientDataJSON(typ, challenge, origin, t.CrossOrigin)
	flags := byte(FlagUP | FlagUV)
	if t.Flags != nil {
		flags = *t.Flags
	}
	a.mu.Lock()
	if a.Counting {
		a.count++
	}
	count := a.count
	a.mu.Unlock()
	if t.SignCount != nil {
		count = *t.SignCount
	}
	ad := authData(rpID, flags, count)
	h := sha256.Sum256(cdj)
	msg := append(append([]byte(nil), ad...), h[:]...)
	if t.BadSignature {
		msg[0] ^= 1
	}
	d := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, d[:])
	if err != nil {
		panic(err)
	}
	id := a.ID
	if t.CredentialID != nil {
		id = t.CredentialID
	}
	return ipc.Presence{
		ChallengeID:       ch.ChallengeID,
		CredentialID:      b64(id),
		ClientDataJSON:    b64(cdj),
		AuthenticatorData: b64(ad),
		Signature:         b64(sig),
	}
}

// Create answers an enrollment as navigator.credentials.create would
// (attestation "none"), with the code the operator typed.
func (a *Authenticator) Create(e ipc.Enrollment, code string, tweaks ...Tweak) ipc.EnrollmentFinish {
	t := merge(tweaks)
	typ, origin, rpID, challenge := or(t.Type, "webauthn.create"), or(t.Origin, a.Origin), or(t.RPID, a.RPID), or(t.Challenge, e.Challenge)
	cdj := clientDataJSON(typ, challenge, origin, t.CrossOrigin)
	flags := byte(FlagUP | FlagUV)
	if t.Flags != nil {
		flags = *t.Flags
	}
	ad := authData(rpID, flags|FlagAT, 0)
	ad = append(ad, make([]byte, 16)...) // AAGUID: none
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(a.ID)))
	ad = append(ad, a.ID...)
	ad = append(ad, a.COSEKey()...)
	ao, err := coreDet.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	if err != nil {
		panic(err)
	}
	id := a.ID
	if t.CredentialID != nil {
		id = t.CredentialID
	}
	return ipc.EnrollmentFinish{
		Code:              code,
		CredentialID:      b64(id),
		ClientDataJSON:    b64(cdj),
		AttestationObject: b64(ao),
	}
}

func clientDataJSON(typ, challenge, origin string, crossOrigin bool) []byte {
	b, err := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, challenge, origin, crossOrigin})
	if err != nil {
		panic(fmt.Sprintf("client data: %v", err))
	}
	return b
}

func authData(rpID string, flags byte, count uint32) []byte {
	h := sha256.Sum256([]byte(rpID))
	ad := append(h[:], flags)
	return binary.BigEndian.AppendUint32(ad, count)
}

func merge(ts []Tweak) Tweak {
	var t Tweak
	for _, x := range ts {
		t.Type, t.Origin, t.RPID, t.Challenge = or(x.Type, t.Type), or(x.Origin, t.Origin), or(x.RPID, t.RPID), or(x.Challenge, t.Challenge)
		if x.Flags != nil {
			t.Flags = x.Flags
		}
		if x.SignCount != nil {
			t.SignCount = x.SignCount
		}
		if x.CredentialID != nil {
			t.CredentialID = x.CredentialID
		}
		t.BadSignature = t.BadSignature || x.BadSignature
		t.CrossOrigin = t.CrossOrigin || x.CrossOrigin
	}
	return t
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
