// Package agents holds the Claude Code agent files of breakglass, embedded
// in the web binary, and parses one into the CLI's inline definition
// (`--agents`): the CLI is never pointed at an agent file on disk, where
// the agent could rewrite it.
//
// It owns nothing but the files, their embedding and that parsing. It must
// never hold secrets, hosts or keys: the agent learns what it may reach
// from the tools on its PATH, which enforce it.
package agents
