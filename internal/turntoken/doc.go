// Package turntoken issues the agent's per-turn tokens: one random token
// per turn of a session, the only credential of the agent's `pve` command,
// live while the turn runs. The session manager gets a turn's token (and
// the environment that carries it to `pve`) from a Set before the verb
// service, which checks tokens against the same Set, exists; so neither
// needs the other to be built first.
//
// It must never keep a token itself (only its SHA-256 digest), never
// compare tokens in anything but constant time, never issue a token for a
// session id that is not a UUID v4, and never let a revoked token check.
package turntoken
