package presence

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"
)

// COSE algorithm identifiers (RFC 9053 §2; RFC 8812 §2 for RS256) this
// package verifies. ES256 is what every passkey supports.
const (
	AlgES256 = -7
	AlgEdDSA = -8
	AlgRS256 = -257
)

// COSE key types and curves (RFC 9053 §7).
const (
	ktyOKP     = 1
	ktyEC2     = 2
	ktyRSA     = 3
	crvP256    = 1
	crvEd25519 = 6
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
	// maxCOSEKey bounds an encoded public key (a 4096-bit RSA key is ~540
	// bytes).
	maxCOSEKey = 1024
)

// ErrKey: a COSE key that is malformed or of an algorithm not accepted.
var ErrKey = errors.New("unusable COSE public key")

// cborDec decodes every CBOR item this package reads (COSE keys,
// attestation objects): small, flat, definite-length, no tags, no duplicate
// map keys.
var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      16,
	}.DecMode()
	if err != nil {
		panic(err) // the options above are constants
	}
	return dm
}()

// PublicKey is an operator's credential public key.
type PublicKey struct {
	// Alg is the COSE algorithm the key verifies.
	Alg int
	// COSE is the key as the operators file holds it (COSE_Key, CBOR).
	COSE []byte

	ec  *ecdsa.PublicKey
	ed  ed25519.PublicKey
	rsa *rsa.PublicKey
}

// coseKey is a COSE_Key map (RFC 9052 §7). Label -1 is the curve of EC2 and
// OKP keys but the modulus of RSA keys, so it is decoded per key type.
type coseKey struct {
	Kty int             `cbor:"1,keyasint"`
	Alg int             `cbor:"3,keyasint"`
	M1  cbor.RawMessage `cbor:"-1,keyasint"`
	M2  []byte          `cbor:"-2,keyasint"`
	M3  []byte          `cbor:"-3,keyasint"`
}

// ParsePublicKey reads one COSE_Key: ES256 on P-256 (the point checked on
// the curve), EdDSA on Ed25519, or RS256 with at least 2048 bits. Anything
// else wraps ErrKey.
func ParsePublicKey(b []byte) (PublicKey, error) {
	pk, rest, err := parsePublicKeyFirst(b)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d bytes after the key", ErrKey, len(rest))
	}
	return pk, err
}

// parsePublicKeyFirst reads the COSE_Key at the start of b and returns what
// follows it (attested credential data may carry extensions after it).
func parsePublicKeyFirst(b []byte) (PublicKey, []byte, error) {
	var k coseKey
	rest, err := cborDec.UnmarshalFirst(b, &k)
	if err != nil {
		return PublicKey{}, nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	used := len(b) - len(rest)
	if used > maxCOSEKey {
		return PublicKey{}, nil, fmt.Errorf("%w: longer than %d bytes", ErrKey, maxCOSEKey)
	}
	pk := PublicKey{Alg: k.Alg, COSE: append([]byte(nil), b[:used]...)}
	switch {
	case k.Kty == ktyEC2 && k.Alg == AlgES256:
		var crv int
		if err := cborDec.Unmarshal(k.M1, &crv); err != nil || crv != crvP256 {
			return PublicKey{}, nil, fmt.Errorf("%w: ES256 needs curve P-256", ErrKey)
		}
		if len(k.M2) != 32 || len(k.M3) != 32 {
			return PublicKey{}, nil, fmt.Errorf("%w: P-256 coordinates are 32 bytes each", ErrKey)
		}
		pt := append(append([]byte{4}, k.M2...), k.M3...)
		pk.ec, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return PublicKey{}, nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
	case k.Kty == ktyOKP && k.Alg == AlgEdDSA:
		var crv int
		if err := cborDec.Unmarshal(k.M1, &crv); err != nil || crv != crvEd25519 {
			return PublicKey{}, nil, fmt.Errorf("%w: EdDSA needs curve Ed25519", ErrKey)
		}
		if len(k.M2) != ed25519.PublicKeySize || k.M3 != nil {
			return PublicKey{}, nil, fmt.Errorf("%w: an Ed25519 key is 32 bytes", ErrKey)
		}
		pk.ed = ed25519.PublicKey(append([]byte(nil), k.M2...))
	case k.Kty == ktyRSA && k.Alg == AlgRS256:
		var n []byte
		if err := cborDec.Unmarshal(k.M1, &n); err != nil {
			return PublicKey{}, nil, fmt.Errorf("%w: RSA modulus: %w", ErrKey, err)
		}
		nn, e := new(big.Int).SetBytes(n), new(big.Int).SetBytes(k.M2)
		if nn.BitLen() < minRSABits || nn.Bit(0) == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return PublicKey{}, nil, fmt.Errorf("%w: RSA key needs ≥ %d bits and a small odd exponent", ErrKey, minRSABits)
		}
		pk.rsa = &rsa.PublicKey{N: nn, E: int(e.Int64())}
	default:
		return PublicKey{}, nil, fmt.Errorf("%w: key type %d with algorithm %d (accepted: ES256, EdDSA, RS256)", ErrKey, k.Kty, k.Alg)
	}
	return pk, rest, nil
}

// verify reports whether sig is the key's signature over msg (for ES256 an
// ASN.1 DER signature, as WebAuthn sends it).
func (pk PublicKey) verify(msg, sig []byte) bool {
	switch {
	case pk.ec != nil:
		h := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(pk.ec, h[:], sig)
	case pk.ed != nil:
		return ed25519.Verify(pk.ed, msg, sig)
	case pk.rsa != nil:
		h := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(pk.rsa, crypto.SHA256, h[:], sig) == nil
	}
	return false
}
