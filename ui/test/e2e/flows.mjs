// The end-to-end flows, written once and run against a server given by the
// caller: { url, cutStreams(), requestApproval(sessionId) }. Each flow drives
// the page as the operator would and checks what he sees.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const OUT = fileURLToPath(new URL('../../out/', import.meta.url));

const T = 30_000; // per wait; turns with the real CLI take a few seconds

export async function shot(page, name) {
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: `${OUT}${name}.png` });
}

let clones = 0;

/**
 * addPasskey gives the page a virtual authenticator through the DevTools
 * protocol (internal transport, user verification), holding
 * passkey.credential when given. It returns the CDP session and the
 * authenticator's id (WebAuthn.setUserVerified makes the next prompt fail
 * as a cancelled one does).
 */
export async function addPasskey(page, passkey = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  if (passkey.credential) {
    // Every page gets its own authenticator holding the same passkey, a
    // clone the keyholder would catch by its signature counter going back
    // (as it should): each clone starts past every earlier one's count.
    clones += 1;
    const signCount = clones * 100_000;
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...passkey.credential, signCount } });
  }
  return { cdp, authenticatorId };
}

/**
 * open loads the page and waits for the app to mount; with a passkey the
 * page gets a virtual authenticator holding it first.
 */
export async function open(context, url, passkey) {
  const page = await context.newPage();
  if (passkey) await addPasskey(page, passkey);
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.locator('textarea#prompt').waitFor({ timeout: T });
  // The first load picks the session to show; a test that starts before
  // it is done races it.
  await page.locator('.app[data-loaded="true"]').waitFor({ timeout: T });
  return { page, dialogs, errors };
}

/** newSession opens the sessions sheet and taps "New session". */
export async function newSession(page) {
  // The hash may already name a session: wait for a different one, or a
  // second call could return the session it started from.
  const before = await page.evaluate(() => location.hash);
  await page.getByRole('button', { name: 'Sessions' }).click();
  await page.getByRole('button', { name: 'New session' }).click();
  await page.waitForFunction(
    (before) => location.hash !== before && /^#\/s\/[0-9a-f-]{36}$/.test(location.hash),
    before,
    { timeout: T },
  );
  await conn(page, 'live');
  return page.evaluate(() => location.hash.slice(4));
}

/** conn waits for the connection indicator to show a state. */
export const conn = (page, state) =>
  page.locator(`.conn[data-state="${state}"]`).waitFor({ timeout: T });

/** waitTurnEnd waits until n turns of the shown session have ended. */
export async function waitTurnEnd(page, n = 1) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-kind="done"]').length >= n,
    n,
    { timeout: 120_000 },
  );
}

/** transcriptText is what the operator sees, message by message. */
export const transcriptText = (page) =>
  page.$$eval('.msgs > li', (lis) => lis.map((li) => `${li.dataset.kind}: ${li.textContent.replace(/\s+/g, ' ').trim()}`));

/**
 * streamPreset taps a preset and records the growth of the model's first
 * text message, to prove it streams in pieces.
 */
export async function streamPreset(page, label) {
  await page.getByRole('button', { name: label, exact: true }).click();
  await page.locator('[data-kind="user"]').first().waitFor({ timeout: T });
  const seen = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const lengths = [];
        const sample = () => {
          const t = document.querySelector('[data-kind="text"]');
          const n = t ? t.textContent.length : 0;
          if (n > 0 && lengths[lengths.length - 1] !== n) lengths.push(n);
        };
        const mo = new MutationObserver(sample);
        mo.observe(document.querySelector('.msgs'), { subtree: true, childList: true, characterData: true });
        const stop = () => {
          mo.disconnect();
          resolve(lengths);
        };
        const iv = setInterval(() => {
          if (document.querySelector('[data-kind="tool"], [data-kind="done"]')) {
            clearInterval(iv);
            sample();
            stop();
          }
        }, 20);
      }),
  );
  return seen;
}

/** axe runs axe-core in the page and returns serious and critical violations. */
export async function axe(page) {
  // Evaluated through the DevTools protocol: an injected <script> would be
  // (rightly) blocked by the page's Content-Security-Policy.
  await page.evaluate(`${AXE}\n;void 0`);
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** noHorizontalScroll checks the page is no wider than the viewport. */
export async function noHorizontalScroll(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth,
    innerWidth: window.innerWidth,
  }));
}

/** smallTargets lists visible controls smaller than 44×44 CSS px. */
export async function smallTargets(page) {
  return page.$$eval('button, summary, textarea, a[href]', (els) =>
    els
      .filter((e) => e.offsetParent !== null)
      .map((e) => ({ e, r: e.getBoundingClientRect() }))
      .filter(({ r }) => r.width > 0 && (r.width < 44 || r.height < 44))
      .map(({ e, r }) => `${e.tagName.toLowerCase()} "${(e.textContent || e.getAttribute('aria-label') || '').trim().slice(0, 30)}" ${Math.round(r.width)}×${Math.round(r.height)}`),
  );
}

export { assert };
