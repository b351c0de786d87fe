// Package presence owns operator presence: the keyholder's proof that an
// enrolled operator, with his own authenticator, asked for exactly this
// mutating verb (or this sign-in) just now. It verifies WebAuthn assertions
// (https://www.w3.org/TR/webauthn-3/#sctn-verifying-assertion) against the
// operators file, issues the challenges they sign (single use, bound to a
// verb, its argv and the VM, short-lived, bounded in number), and runs the
// install-time enrollment that adds a passkey with a one-time code.
//
// Its checks follow the numbered steps of the specification, in that order,
// so a reviewer can read them side by side; each has its own test.
//
// It must never accept an assertion whose every check did not pass, never
// let a challenge be used twice (the first use consumes it, valid or not),
// never trust anything the caller says about who it is (the operator is the
// owner of the key that signed), and never hold a private key. It uses the
// standard library's crypto and github.com/fxamacker/cbor/v2 only; it reads
// no environment and keeps no global state.
package presence
