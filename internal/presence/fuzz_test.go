package presence

import (
	"encoding/hex"
	"testing"
)

// FuzzParsePublicKey feeds the COSE key parser arbitrary CBOR: it must
// never panic, and a key it accepts must have an accepted algorithm.
func FuzzParsePublicKey(f *testing.F) {
	for _, s := range []string{
		// ES256, EdDSA skeletons and junk.
		"a5010203262001215820" + "0000000000000000000000000000000000000000000000000000000000000000" + "225820" + "0000000000000000000000000000000000000000000000000000000000000000",
		"a4010103272006215820" + "0000000000000000000000000000000000000000000000000000000000000000",
		"bf0102ff", "a201020102", "",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b)
		if err == nil && pk.Alg != AlgES256 && pk.Alg != AlgEdDSA && pk.Alg != AlgRS256 {
			t.Fatalf("accepted algorithm %d", pk.Alg)
		}
		if err == nil && pk.verify(nil, nil) {
			t.Fatal("an empty signature verified")
		}
	})
}

// FuzzParseAttestationObject feeds the attestation object and
// authenticator data parsers arbitrary bytes: never a panic, and accepted
// attested data always carries a credential id and a key.
func FuzzParseAttestationObject(f *testing.F) {
	f.Add([]byte{0xa3, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n', 'e'})
	f.Add(make([]byte, 37))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ad, err := parseAttestationObject(b); err == nil && (len(ad.CredentialID) == 0 || ad.Key.COSE == nil) {
			t.Fatal("attested data without a credential")
		}
		if ad, err := parseAuthData(b, true); err == nil && len(ad.CredentialID) == 0 {
			t.Fatal("attested data without a credential id")
		}
		_, _ = parseAuthData(b, false)
		_, _ = parseClientData(b)
	})
}
