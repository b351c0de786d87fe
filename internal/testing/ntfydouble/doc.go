// Package ntfydouble is an ntfy server for tests: it records every message
// published to its topic (body, Title, Click, Tags, Priority and the bearer
// token) and answers as a test scripts it.
//
// It must never accept a publish without the expected token when one is
// set: that is recorded as a rejection and answered 403.
package ntfydouble
