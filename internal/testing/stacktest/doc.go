// Package stacktest is internal/devstack for tests: the same stack `make
// run` starts (simulated Proxmox host and devvm, keys, pins, the real
// keyholder and web binaries), with an API double for the claude CLI, the
// binaries built once per test process, every failure a test failure, and
// an HTTP client for the web that signs in as the trusted proxy's user.
//
// cmd/web's tests, the system tests and the red team build their stack
// here, and the UI's end-to-end tests call devstack.Start itself (they
// want the edge too): a new variable or host option is added in one place.
package stacktest
