package claude

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"breakglass/agents"
	"breakglass/internal/sandbox"
)

// Sandbox confines every claude process of a Runner and all it starts
// (package sandbox). With it, each session has its own folders under the
// turn's Dir: home (HOME, claude's session store), tmp (TMPDIR) and work
// (the working directory), created 0700 on the first turn; the agent may
// write those and nothing else.
type Sandbox struct {
	// Launcher is the web binary: claude runs as
	// `<Launcher> sandbox -- <claude> <args…>`.
	Launcher string
	// Shell is the Bash tool's shell prefix (CLAUDE_CODE_SHELL_PREFIX), the
	// launcher under sandbox.ShellName: each tool command gets a nested
	// domain.
	Shell string
	// Policy is the base policy; each turn adds its session's folders.
	Policy sandbox.Policy
	// Env are KEY=value entries every turn gets (e.g. the ssh wrapper's
	// config, agenthome.ConfigVar).
	Env []string
}

// SessionFolders are the names of a session's own folders under its Dir.
var SessionFolders = struct{ Home, Tmp, Work string }{"home", "tmp", "work"}

// settingArgs keep the CLI from loading anything the agent could have
// written: no user, project or local settings (hooks, permissions, env),
// no CLAUDE.md, no MCP server but the (empty) ones given here, and the
// agent's definition inline rather than from HOME/.claude/agents/.
// (docs/claude-cli.md records what each flag was seen to do.)
func (r *Runner) settingArgs() []string {
	args := []string{"--setting-sources", "", "--strict-mcp-config"}
	if r.inlineAgent != "" {
		args = append(args, "--agents", r.inlineAgent, "--agent", r.cfg.Agent)
	}
	return args
}

// parseAgent checks Config.AgentDefinition and returns its --agents value.
func parseAgent(cfg Config) (string, error) {
	if len(cfg.AgentDefinition) == 0 {
		return "", nil
	}
	d, err := agents.Parse(cfg.AgentDefinition)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if d.Name != cfg.Agent {
		return "", fmt.Errorf("%w: the agent definition is named %q, not %q", ErrConfig, d.Name, cfg.Agent)
	}
	return d.Inline()
}

// sessionFolders creates the session's own folders (0700) when there is a
// Sandbox, and refuses any that is not a plain directory: a folder the
// agent replaced with a symbolic link would widen its policy.
func (r *Runner) sessionFolders(sessionDir string) error {
	if r.cfg.Sandbox == nil {
		return nil
	}
	for _, name := range []string{SessionFolders.Home, filepath.Join(SessionFolders.Home, sandbox.ConfigDirName), SessionFolders.Tmp, SessionFolders.Work} {
		d := filepath.Join(sessionDir, name)
		if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
			return fmt.Errorf("run claude: create the session's folder: %w", err)
		}
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			return fmt.Errorf("run claude: the session's folder %s is not a directory", d)
		}
	}
	return nil
}

// confine turns c into the command that runs it under the sandbox: the
// launcher in front, the session's own folders (sessionFolders made them)
// as HOME, TMPDIR and working directory, the policy and the shell prefix
// in the environment. Without a Sandbox, c is returned unchanged.
func (r *Runner) confine(c command, sessionDir string) command {
	sb := r.cfg.Sandbox
	if sb == nil {
		return c
	}
	home := filepath.Join(sessionDir, SessionFolders.Home)
	tmp := filepath.Join(sessionDir, SessionFolders.Tmp)
	work := filepath.Join(sessionDir, SessionFolders.Work)
	// The base policy was validated in New and the session's folders are
	// clean absolute paths: Encode cannot fail here.
	policy, _ := sb.Policy.Session(home, tmp, work).Encode()
	var env []string
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "TMPDIR", "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_SHELL_PREFIX", sandbox.PolicyVar:
			continue
		case "PATH":
			kv = "PATH=" + safePath(v, sessionDir)
		}
		env = append(env, kv)
	}
	env = append(env, sb.Env...)
	env = append(env,
		"HOME="+home,
		"CLAUDE_CONFIG_DIR="+filepath.Join(home, sandbox.ConfigDirName),
		"TMPDIR="+tmp,
		"CLAUDE_CODE_SHELL_PREFIX="+sb.Shell,
		sandbox.PolicyVar+"="+policy,
	)
	c.Args = append([]string{sandbox.Subcommand, "--", c.Path}, c.Args...)
	c.Path = sb.Launcher
	c.Env = env
	c.Dir = work
	return c
}

// safePath keeps the PATH entries a later turn cannot have planted a
// program in: absolute ones outside the session's folder ("." or a
// relative entry would find a binary the agent wrote into its work
// folder).
func safePath(path, sessionDir string) string {
	var keep []string
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		dir = filepath.Clean(dir)
		if dir == sessionDir || strings.HasPrefix(dir, sessionDir+"/") {
			continue
		}
		keep = append(keep, dir)
	}
	return strings.Join(keep, string(os.PathListSeparator))
}
