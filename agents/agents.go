package agents

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Breakglass is agents/breakglass.md: the breakglass agent's front matter
// (name, description, tools) and system prompt.
//
//go:embed breakglass.md
var Breakglass []byte

// Definition is an agent file parsed: the claude CLI's inline agent
// definition (`--agents '{"<name>": {…}}'`), so the CLI needs no agent file
// it would read from a folder the agent can write.
type Definition struct {
	// Name is the front matter's name: the --agent argument.
	Name string `json:"-"`
	// Description, Tools and Model come from the front matter.
	Description string   `json:"description"`
	Tools       []string `json:"tools,omitempty"`
	Model       string   `json:"model,omitempty"`
	// Prompt is the body after the front matter: the system prompt.
	Prompt string `json:"prompt"`
}

// ErrAgentFile: an agent file is not front matter plus a body.
var ErrAgentFile = errors.New("invalid agent file")

// Parse reads an agent file: a front matter of `key: value` lines between
// `---` lines (name and description required), then the prompt.
func Parse(b []byte) (Definition, error) {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	rest, ok := strings.CutPrefix(s, "---\n")
	if !ok {
		return Definition{}, fmt.Errorf("%w: no front matter", ErrAgentFile)
	}
	front, body, ok := strings.Cut(rest, "\n---\n")
	if !ok {
		return Definition{}, fmt.Errorf("%w: front matter not closed", ErrAgentFile)
	}
	var d Definition
	for _, line := range strings.Split(front, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return Definition{}, fmt.Errorf("%w: front matter line %q", ErrAgentFile, line)
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "name":
			d.Name = v
		case "description":
			d.Description = v
		case "model":
			d.Model = v
		case "tools":
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					d.Tools = append(d.Tools, t)
				}
			}
		}
	}
	d.Prompt = strings.TrimSpace(body)
	if d.Name == "" || d.Description == "" || d.Prompt == "" {
		return Definition{}, fmt.Errorf("%w: name, description and a prompt are required", ErrAgentFile)
	}
	return d, nil
}

// Inline is the value of the CLI's --agents flag for d alone.
func (d Definition) Inline() (string, error) {
	b, err := json.Marshal(map[string]Definition{d.Name: d})
	if err != nil {
		return "", fmt.Errorf("encode agent %s: %w", d.Name, err)
	}
	return string(b), nil
}
