// Package uuid owns the one id format breakglass hands out and accepts for
// sessions and approvals: a random UUID v4 in canonical lowercase form
// (RFC 9562 §5.4). Ids are checked here before any map lookup or path
// is built from them.
//
// It must never accept another form (upper case, braces, other versions):
// one spelling per id keeps map keys and folder names unambiguous.
package uuid
