// Package sshdtest starts a stock OpenSSH sshd (Debian's /usr/sbin/sshd) for
// tests: its own temporary config, a freshly generated Ed25519 host key, a
// given authorized_keys, a free loopback port, and its debug log captured for
// failure messages. It also writes client keys into files, since the real
// ssh client only reads keys from files.
//
// It is test-only: it must never be imported by a binary, never listen on
// anything but 127.0.0.1, and never touch the machine's own sshd config, host
// keys or authorized_keys. A missing sshd fails the test (it is never
// skipped): `make deps-apt` installs it.
package sshdtest
