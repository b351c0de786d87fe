// Handing an exported session to the operator: the phone's share sheet
// where the browser can share files, else a download.

/**
 * deliver offers file through nav.share when nav.canShare says files can
 * be shared, else saves it through a temporary link. It returns 'shared',
 * 'downloaded' or 'cancelled' (the operator closed the share sheet).
 * nav and doc are navigator and document (parameters for the tests).
 */
export async function deliver(file, { nav = globalThis.navigator, doc = globalThis.document, url = globalThis.URL } = {}) {
  if (nav && typeof nav.share === 'function' && typeof nav.canShare === 'function' && nav.canShare({ files: [file] })) {
    try {
      await nav.share({ files: [file], title: file.name });
      return 'shared';
    } catch (e) {
      if (e && e.name === 'AbortError') return 'cancelled';
      // Sharing refused (not allowed here): fall back to a download.
    }
  }
  const href = url.createObjectURL(file);
  try {
    const a = doc.createElement('a');
    a.href = href;
    a.download = file.name;
    a.rel = 'noopener';
    doc.body.appendChild(a);
    a.click();
    a.remove();
  } finally {
    // Revoked after the click has started the download.
    setTimeout(() => url.revokeObjectURL(href), 10_000);
  }
  return 'downloaded';
}

/** TITLE_MAX is the longest title the server accepts, in characters. */
export const TITLE_MAX = 200;

/**
 * titleProblem says what is wrong with a title before it is sent, or ''
 * (the server checks the same and has the last word).
 */
export function titleProblem(title) {
  const t = typeof title === 'string' ? title.trim() : '';
  if (t === '') return 'A title cannot be empty.';
  if ([...t].length > TITLE_MAX) return `A title has at most ${TITLE_MAX} characters.`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(t)) return 'A title cannot hold control characters.';
  return '';
}
