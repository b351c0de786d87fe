// What the page says about the agent's sandbox, from /readyz's `sandbox`
// ({ abi, kernel_abi, level, missing }): nothing when it is full, a banner
// when it is partial or missing (the server never confines less silently).

/** sandboxNotice returns the banner's text, or '' when there is nothing to say. */
export function sandboxNotice(status) {
  if (!status || typeof status !== 'object') return '';
  const abi = Number.isInteger(status.abi) ? status.abi : 0;
  const missing = Array.isArray(status.missing) ? status.missing.filter((m) => typeof m === 'string') : [];
  switch (status.level) {
    case 'full':
      return '';
    case 'missing':
      return "The agent is NOT sandboxed: this server's kernel has no Landlock. Its commands can reach this server's own files and ports.";
    case 'partial':
      return `The agent's sandbox is partial (Landlock ABI ${abi}). Not restricted: ${missing.join('; ') || 'some operations'}.`;
    default:
      return '';
  }
}
