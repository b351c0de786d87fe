// Package passkey is a software WebAuthn authenticator for tests: an ES256
// passkey that answers keyholder challenges (navigator.credentials.get) and
// enrollments (navigator.credentials.create) as a phone would, and can be
// told to get one thing wrong (type, origin, RP ID, flags, counter,
// signature) so each presence check can be shown to refuse it.
//
// It is test code: it must never be imported by a binary (the keyholder's
// and the web's dependency tests check that).
package passkey
