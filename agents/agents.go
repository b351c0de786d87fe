package agents

import _ "embed"

// Breakglass is agents/breakglass.md: the breakglass agent's front matter
// (name, description, tools) and system prompt.
//
//go:embed breakglass.md
var Breakglass []byte
