// Package pushdouble is a Web Push service for tests: it hands out
// subscriptions with their own P-256 keys and auth secrets, and for every
// message it receives it checks the VAPID authorization (RFC 8292: an ES256
// JWT whose aud is the endpoint's origin, whose exp is at most 24 hours
// ahead, whose sub is a mailto: or https: contact, signed by the key in k)
// and decrypts the aes128gcm payload (RFC 8291) with the subscription's
// private key, as a browser's push service and user agent together would.
// A test scripts each subscription's answers (201, 404, 410, 500, a hang).
//
// It must never accept a message a real push service and browser would not
// deliver: a bad JWT or an undecryptable body is recorded as a rejection,
// answered 400/401/403, and never as a delivered message.
package pushdouble
