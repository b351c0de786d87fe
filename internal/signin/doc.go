// Package signin owns the web's side of passkey sign-in and enrollment: it
// relays login challenges and assertions to the keyholder (which alone
// verifies them), keeps the resulting sign-in sessions in memory behind an
// HttpOnly, SameSite=Strict cookie (`__Host-` prefixed and Secure over
// HTTPS; 12 hours; a restart asks for one more tap), and relays the
// install-time enrollment of a passkey. Its routes answer before sign-in,
// so they are rate-limited and same-origin only.
//
// It must never decide on its own that a passkey is valid (only a 200 from
// the keyholder's /v1/logins signs anyone in), never keep a cookie's value
// (only its SHA-256), never accept a cross-origin state change, and never
// see or relay the enrollment code anywhere but to the keyholder.
package signin
