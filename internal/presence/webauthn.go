package presence

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Client data types (https://www.w3.org/TR/webauthn-3/#dom-collectedclientdata-type).
const (
	typeGet    = "webauthn.get"
	typeCreate = "webauthn.create"
)

// Authenticator data flags (https://www.w3.org/TR/webauthn-3/#sctn-authenticator-data).
const (
	flagUP = 1 << 0 // user present
	flagUV = 1 << 2 // user verified
	flagAT = 1 << 6 // attested credential data included
	flagED = 1 << 7 // extension data included
)

// Size limits of what a browser sends.
const (
	// MaxClientDataJSON bounds clientDataJSON; browsers send ~200 bytes.
	MaxClientDataJSON = 2048
	// MaxAuthenticatorData bounds authenticator data (37 bytes plus
	// attested credential data and extensions).
	MaxAuthenticatorData = 2048
	// MaxSignature bounds a signature (RSA-4096 is 512 bytes).
	MaxSignature = 1024
	// MaxCredentialID is the specification's own bound on credential ids.
	MaxCredentialID = 1023
	// MaxAttestationObject bounds an attestation object.
	MaxAttestationObject = 8192
	// authDataMin is rpIdHash (32) + flags (1) + signCount (4).
	authDataMin = 37
)

// clientData is the part of CollectedClientData this package checks
// (https://www.w3.org/TR/webauthn-3/#dictdef-collectedclientdata). Other
// members are allowed, as the specification says.
type clientData struct {
	Type        string `json:"type"`
	Challenge   string `json:"challenge"`
	Origin      string `json:"origin"`
	CrossOrigin bool   `json:"crossOrigin"`
}

// parseClientData decodes clientDataJSON (steps 9 and 10 of verifying an
// assertion, 5 and 6 of registering a credential).
func parseClientData(b []byte) (clientData, error) {
	var c clientData
	if len(b) == 0 || len(b) > MaxClientDataJSON {
		return c, fmt.Errorf("clientDataJSON of %d bytes (1 to %d)", len(b), MaxClientDataJSON)
	}
	if !utf8.Valid(b) {
		return c, errors.New("clientDataJSON is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("clientDataJSON: %w", err)
	}
	if dec.More() {
		return c, errors.New("clientDataJSON: data after the object")
	}
	return c, nil
}

// authData is authenticator data
// (https://www.w3.org/TR/webauthn-3/#sctn-authenticator-data).
type authData struct {
	RPIDHash  [32]byte
	Flags     byte
	SignCount uint32
	// CredentialID and Key are set when the AT flag is (registration).
	CredentialID []byte
	Key          PublicKey
}

// parseAuthData decodes authenticator data. With attested set it requires
// and parses the attested credential data (registration); without, it
// reads the fixed 37 bytes and leaves the rest, which the signature covers,
// to the signature check.
func parseAuthData(b []byte, attested bool) (authData, error) {
	var a authData
	if len(b) < authDataMin || len(b) > MaxAuthenticatorData {
		return a, fmt.Errorf("authenticator data of %d bytes (%d to %d)", len(b), authDataMin, MaxAuthenticatorData)
	}
	copy(a.RPIDHash[:], b[:32])
	a.Flags = b[32]
	a.SignCount = binary.BigEndian.Uint32(b[33:37])
	if !attested {
		return a, nil
	}
	if a.Flags&flagAT == 0 {
		return a, errors.New("authenticator data has no attested credential data")
	}
	rest := b[authDataMin:]
	// aaguid (16) + credentialIdLength (2)
	if len(rest) < 18 {
		return a, errors.New("attested credential data cut short")
	}
	n := int(binary.BigEndian.Uint16(rest[16:18]))
	rest = rest[18:]
	if n == 0 || n > MaxCredentialID || len(rest) < n {
		return a, fmt.Errorf("credential id of %d bytes in %d", n, len(rest))
	}
	a.CredentialID = append([]byte(nil), rest[:n]...)
	key, rest, err := parsePublicKeyFirst(rest[n:])
	if err != nil {
		return a, err
	}
	a.Key = key
	if a.Flags&flagED != 0 {
		var ext map[string]any
		if rest, err = cborDec.UnmarshalFirst(rest, &ext); err != nil {
			return a, fmt.Errorf("extensions: %w", err)
		}
	}
	if len(rest) != 0 {
		return a, fmt.Errorf("%d bytes after the attested credential data", len(rest))
	}
	return a, nil
}

// attestationObject is the registration's attestation object
// (https://www.w3.org/TR/webauthn-3/#sctn-attestation). The statement is
// not checked: the enrollment code is the trust anchor, not the maker.
type attestationObject struct {
	Fmt      string          `cbor:"fmt"`
	AttStmt  cbor.RawMessage `cbor:"attStmt"`
	AuthData []byte          `cbor:"authData"`
}

// parseAttestationObject decodes an attestation object and its
// authenticator data with the attested credential data.
func parseAttestationObject(b []byte) (authData, error) {
	if len(b) == 0 || len(b) > MaxAttestationObject {
		return authData{}, fmt.Errorf("attestation object of %d bytes (1 to %d)", len(b), MaxAttestationObject)
	}
	var ao attestationObject
	if err := cborDec.Unmarshal(b, &ao); err != nil {
		return authData{}, fmt.Errorf("attestation object: %w", err)
	}
	if ao.Fmt == "" || ao.AuthData == nil {
		return authData{}, errors.New("attestation object without fmt or authData")
	}
	return parseAuthData(ao.AuthData, true)
}
