// Package agents holds the Claude Code agent files that breakglass installs
// into the agent's HOME (HOME/.claude/agents/), embedded in the web binary.
//
// It owns nothing but the files and their embedding. It must never hold
// secrets, hosts or keys: the agent learns what it may reach from the
// tools on its PATH, which enforce it.
package agents
