package presence

import (
	"encoding/base64"
	"errors"
)

// errBase64 is returned for a field that is not unpadded base64url.
var errBase64 = errors.New("not unpadded base64url")

// Encode returns b as unpadded base64url, the encoding of every binary
// field on the wire (as WebAuthn's own JSON forms use).
func Encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Decode reads an unpadded base64url field; anything else is refused.
func Decode(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errBase64
	}
	return b, nil
}
