// The end-to-end suite at 390×844 in Debian's Chromium. `target` is the
// real stack or the stand-in:
//   url                          the page, behind the edge
//   prepare(kind)                script the next turn ('diagnose')
//   cutStreams()                 end every open event stream, server side; how many
//   mutatingCalls()              what the (simulated) host ran that changes the VM
//   requestApproval(page, sid)   make the agent ask for a reset
//   toolCommand, toolOutput      what the diagnose turn's tool card shows
//   manageSessions               the server has search, rename, archive and export
//   close()
import { after, before, test } from 'node:test';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { launch } from './browser.mjs';
import {
  OUT, addPasskey, assert, axe, conn, newSession, noHorizontalScroll, open, shot, smallTargets, streamPreset,
  transcriptText, waitTurnEnd,
} from './flows.mjs';

// Lighthouse's "slow 4G" mobile profile as DevTools applies it: 150 ms RTT
// and 1.6 Mbit/s down, 750 kbit/s up, each scaled as DevTools does
// (×3.75 latency, ×0.9 throughput); with a 4× CPU slowdown.
const SLOW_4G = {
  offline: false,
  latency: 562.5,
  downloadThroughput: (1.6 * 1024 * 1024 * 0.9) / 8,
  uploadThroughput: (750 * 1024 * 0.9) / 8,
};

export function suite(getTarget) {
  let browser;
  let target;

  before(async () => {
    target = await getTarget();
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await target?.close?.();
  });

  test('preset-streams-tool-result', async () => {
    const { page, errors } = await open(browser.context, target.url, target.passkey);
    await shot(page, '01-empty');
    await newSession(page);
    await target.prepare('diagnose');
    const lengths = await streamPreset(page, 'Triage');
    assert.ok(lengths.length >= 2, `text arrived in pieces, saw lengths ${JSON.stringify(lengths)}`);
    const tool = page.locator('[data-kind="tool"]').first();
    await tool.locator('.cmd').waitFor();
    assert.match(await tool.locator('.cmd').textContent(), target.toolCommand);
    await tool.locator('.output').waitFor({ timeout: 60_000 });
    assert.match(await tool.locator('.output').textContent(), target.toolOutput);
    await shot(page, '02-streaming');
    await waitTurnEnd(page);
    const footer = page.locator('[data-kind="result"] .result');
    await footer.waitFor();
    const f = await footer.textContent();
    assert.match(f, /Done/);
    assert.match(f, /\d+(\.\d+)? (ms|s)/, 'duration shown');
    assert.match(f, /\$\d/, 'cost shown');
    await shot(page, '03-result');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('stream-cut-reconnects-without-gap-or-duplicate', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    const sid = await newSession(page);
    await target.prepare('diagnose');
    await page.locator('#prompt').fill('check the devvm');
    await page.keyboard.press('Enter');
    await page.locator('[data-kind="text"]').first().waitFor({ timeout: T() });
    // Record every state the indicator shows: "reconnecting" may last
    // only as long as the browser's retry delay.
    await page.evaluate(() => {
      window.connStates = [];
      const el = document.querySelector('.conn');
      new MutationObserver(() => {
        if (window.connStates.at(-1) !== el.dataset.state) window.connStates.push(el.dataset.state);
      }).observe(el, { attributes: true });
    });
    assert.ok((await target.cutStreams()) >= 1, 'the page\'s stream was open and got cut');
    await page.waitForFunction(() => window.connStates.includes('reconnecting'), null, { timeout: T() });
    await shot(page, '04-reconnecting');
    await page.waitForFunction(() => window.connStates.at(-1) === 'live', null, { timeout: T() });
    assert.deepEqual(await page.evaluate(() => window.connStates), ['reconnecting', 'live']);
    await waitTurnEnd(page);
    const seen = await transcriptText(page);
    // A fresh page replays the whole log: the same messages, once each.
    const fresh = await open(browser.context, `${target.url}/#/s/${sid}`);
    await waitTurnEnd(fresh.page);
    assert.deepEqual(seen, await transcriptText(fresh.page));
    assert.equal(seen.filter((s) => s.startsWith('user:')).length, 1);
    assert.equal(seen.filter((s) => s.startsWith('result:')).length, 1);
    await fresh.page.close();
    await page.close();
  });

  test('stop-cancels-the-turn', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    await newSession(page);
    await target.prepare('slow');
    await page.locator('#prompt').fill('read the whole journal');
    await page.keyboard.press('Enter');
    await page.locator('[data-kind="text"]').first().waitFor({ timeout: T() });
    const spin = () => page.locator('.spinner').evaluate((e) => parseFloat(getComputedStyle(e).animationDuration));
    assert.ok((await spin()) > 0.1, 'the working spinner turns');
    await page.emulateMedia({ reducedMotion: 'reduce' });
    assert.ok((await spin()) < 0.001, 'and stops turning under prefers-reduced-motion');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await page.locator('[data-kind="done"]').waitFor({ timeout: T() });
    assert.match(await page.locator('[data-kind="done"]').textContent(), /cancelled/);
    for (const r of await page.locator('[data-kind="result"]').allTextContents()) {
      assert.match(r, /Stopped/, 'the result of an interrupted turn reads as stopped, not failed');
    }
    await page.getByRole('button', { name: 'Send', exact: true }).waitFor();
    await shot(page, '11-cancelled');
    await page.close();
  });

  // Notification settings: a subscription round trip and the service
  // worker's push handler, in real Chromium.
  //
  // STUBBED, said plainly: headless Chromium reaches no push service here
  // (PushManager.subscribe never settles), so the page's PushManager is
  // replaced by a stub that returns a subscription of the Go push service
  // double (internal/testing/pushdouble) and records the key it was given.
  // Everything else is real: the service worker, the settings page, the
  // web's push routes, VAPID signing and aes128gcm encryption (checked and
  // decrypted by the double), and the push event, delivered to the real
  // service worker through DevTools. Targets without a push double skip it.
  test('notification-settings', async (t) => {
    if (!target.push) {
      t.skip('this target has no push service double');
      return;
    }
    const sub = await target.push.subscription();
    const origin = new URL(target.url).origin;
    await browser.context.grantPermissions(['notifications'], { origin });
    const page = await browser.context.newPage();
    await page.addInitScript((sub) => {
      const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      let current = null;
      const make = () => ({
        endpoint: sub.endpoint,
        expirationTime: null,
        toJSON: () => ({ endpoint: sub.endpoint, expirationTime: null, keys: sub.keys }),
        unsubscribe: async () => {
          current = null;
          return true;
        },
      });
      PushManager.prototype.subscribe = async function (opts) {
        window.__pushKeyUsed = b64url(opts.applicationServerKey);
        window.__pushUserVisibleOnly = opts.userVisibleOnly;
        current = make();
        return current;
      };
      PushManager.prototype.getSubscription = async function () {
        return current;
      };
    }, sub);
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(target.url);
    await page.locator('textarea#prompt').waitFor({ timeout: T() });
    const sid = await newSession(page);
    await page.getByRole('button', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: 'Enable notifications' }).click();
    await page.locator('[data-testid="push-state"]', { hasText: 'On for this device.' }).waitFor({ timeout: T() });
    const key = await page.evaluate(async () => (await (await fetch('/api/push/key')).json()).public_key);
    assert.equal(await page.evaluate(() => window.__pushKeyUsed), key, 'subscribed with the web\'s VAPID key');
    assert.equal(await page.evaluate(() => window.__pushUserVisibleOnly), true);

    // Choose the kinds: the server keeps the choice.
    const subs = () => page.evaluate(async () => (await (await fetch('/api/push/subscriptions')).json()).subscriptions);
    await page.getByRole('checkbox', { name: /turn ended/ }).uncheck();
    // (page.waitForFunction does not await an async predicate: poll here.)
    const until = async (what, fn) => {
      const end = Date.now() + T();
      for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await page.waitForTimeout(100);
      }
    };
    await until('the kinds to be saved', async () => {
      const s = await subs();
      return s.length === 1 && !s[0].events.includes('turn');
    });
    assert.deepEqual((await subs())[0].events, ['approval', 'permission', 'vm']);

    // The test button: the double decrypts it; the page shows it delivered.
    await page.getByRole('button', { name: 'Send a test notification' }).click();
    await page.locator('[data-testid="mine-status"]', { hasText: /Delivered/ }).waitFor({ timeout: T() });
    const got = await target.push.delivered();
    assert.ok(got.some((m) => m.title === 'Test notification' && m.kind === 'test'), JSON.stringify(got));
    await shot(page, '20-notifications');

    // The service worker's push handler shows what the web sends, with a
    // same-origin link only.
    const cdp = await browser.context.newCDPSession(page);
    const regs = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => regs.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    const deadline = Date.now() + T();
    while (!regs.some((r) => !r.isDeleted && r.scopeURL === `${origin}/`)) {
      if (Date.now() > deadline) throw new Error('no service worker registration reported');
      await new Promise((r) => cdp.once('ServiceWorker.workerRegistrationUpdated', r));
    }
    const registrationId = regs.find((r) => !r.isDeleted && r.scopeURL === `${origin}/`).registrationId;
    // A push delivered before the worker is active is dropped: the
    // registration is reported while it still installs (on a busy machine,
    // for a while).
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    const versions = [];
    cdp.on('ServiceWorker.workerVersionUpdated', (e) => versions.push(...e.versions.map((v) => `${v.status}/${v.runningStatus}`)));
    const tags = () => page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => n.tag));
    // A push DevTools injects while a busy machine is still starting the
    // worker can be lost: it is delivered again (the same tag replaces,
    // never adds) until it shows, three times at most.
    const push = async (m) => {
      for (let i = 0; i < 3; i++) {
        await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(m) });
        const end = Date.now() + 8000;
        while (Date.now() < end) {
          if ((await tags()).includes(m.tag)) return;
          await page.waitForTimeout(100);
        }
        console.log(`push ${m.tag}: not shown after 8 s, delivered again (worker: ${versions.slice(-4).join(', ')})`);
      }
      throw new Error(`push ${m.tag} never shown (worker: ${versions.slice(-4).join(', ')})`);
    };
    await push({ kind: 'approval', title: 'Approval waiting: reset', body: 'The agent asks to run reset on the VM.', url: `/#/s/${sid}`, tag: `approval-${sid}` });
    await push({ kind: 'vm', title: 'VM stopped', body: 'The VM is stopped.', url: 'https://evil.example/x', tag: 'vm' });
    const shown = await until('two notifications', async () => {
      const n = await page.evaluate(async () =>
        (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data.url, actions: n.actions.length })),
      );
      return n.length >= 2 && n;
    });
    const byTag = Object.fromEntries(shown.map((n) => [n.tag, n]));
    assert.ok(byTag[`approval-${sid}`] && byTag.vm, JSON.stringify(shown));
    assert.equal(byTag[`approval-${sid}`].title, 'Approval waiting: reset');
    assert.equal(byTag[`approval-${sid}`].url, `${origin}/#/s/${sid}`);
    assert.equal(byTag[`approval-${sid}`].actions, 0, 'no action buttons: approving needs the page');
    assert.equal(byTag.vm.url, `${origin}/`, 'a foreign link opens the page itself');

    // Turning it off removes the subscription on the server.
    await page.getByRole('button', { name: 'Turn off on this device' }).click();
    await page.locator('[data-testid="push-state"]', { hasText: 'Off for this device.' }).waitFor({ timeout: T() });
    assert.deepEqual(await subs(), []);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('sessions-switch', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    const first = await newSession(page);
    await target.prepare('diagnose');
    await page.locator('#prompt').fill('first session prompt');
    await page.keyboard.press('Enter');
    await waitTurnEnd(page);
    const seen = await transcriptText(page);
    const second = await newSession(page);
    assert.notEqual(second, first);
    assert.equal(await page.locator('.msgs > li').count(), 0, 'a new session starts empty');
    await page.getByRole('button', { name: 'Sessions' }).click();
    const item = page.getByRole('button', { name: /^first session prompt/ });
    await item.waitFor();
    await shot(page, '12-sessions');
    await item.click();
    await page.waitForFunction((id) => location.hash === `#/s/${id}`, first);
    await conn(page, 'live');
    await waitTurnEnd(page);
    assert.deepEqual(await transcriptText(page), seen, 'switching back shows the same messages, once');
    await page.close();
  });

  // The first session shown after load may arrive after the operator
  // opened the Sessions sheet: the sheet stays open and "New session"
  // works. (The list is held in the browser until the sheet is open.)
  test('sessions-sheet-opened-while-loading-stays-open', async () => {
    const page = await browser.context.newPage();
    let release;
    const held = new Promise((r) => (release = r));
    let first = true;
    await page.route('**/api/sessions', async (route) => {
      if (first && route.request().method() === 'GET') {
        first = false;
        await held;
      }
      await route.continue();
    });
    await page.goto(target.url);
    await page.locator('textarea#prompt').waitFor({ timeout: T() });
    // At least one session to show first.
    assert.equal(await page.evaluate(async () => (await fetch('/api/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status), 201);
    await page.getByRole('button', { name: 'Sessions' }).click();
    const create = page.getByRole('button', { name: 'New session' });
    await create.waitFor({ timeout: T() });
    release();
    await page.waitForFunction(() => /^#\/s\/[0-9a-f-]{36}$/.test(location.hash), null, { timeout: T() });
    const shown = await page.evaluate(() => location.hash);
    assert.ok(await create.isVisible(), 'the sheet the operator opened is still open');
    await create.click();
    await page.waitForFunction((shown) => location.hash !== shown && /^#\/s\/[0-9a-f-]{36}$/.test(location.hash), shown, { timeout: T() });
    await page.close();
  });

  test('vm-sheet-confirm', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    const sid = await newSession(page);
    const posts = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && /\/api\/vm\/(reset|stop|start|cycle)$/.test(r.url())) posts.push(r.url());
    });
    const callsBefore = await target.mutatingCalls();
    await page.getByRole('button', { name: 'VM power controls' }).click();
    const chip = page.locator('[data-vm-state]');
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    assert.match(await chip.textContent(), /running/);
    await shot(page, '05-vm-sheet');

    await page.locator('button[data-verb="reset"]').click();
    const confirm = page.getByRole('alertdialog');
    await confirm.waitFor();
    assert.match(await confirm.textContent(), /Reset VM/);
    assert.match(await confirm.textContent(), /reboots/, 'says what reset does');
    await shot(page, '06-vm-confirm');
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    await page.locator('button[data-verb="reset"]').waitFor();
    assert.deepEqual(posts, [], 'cancel sends nothing');
    assert.deepEqual(await target.mutatingCalls(), callsBefore, 'cancel runs nothing on the host');

    await page.locator('button[data-verb="reset"]').click();
    await page.getByRole('alertdialog').getByRole('button', { name: /^Reset VM/ }).click();
    const result = page.getByRole('region', { name: 'Result of reset' });
    await result.waitFor({ timeout: T() });
    assert.match(await result.textContent(), /exit 0/);
    assert.equal(posts.length, 1, 'confirm runs it once');
    assert.deepEqual(await target.mutatingCalls(), [...callsBefore, 'qm reset 102'], 'the host ran qm reset');
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    await shot(page, '07-vm-result');

    // stop: the chip follows the VM until it is stopped; then start again.
    await page.locator('button[data-verb="stop"]').click();
    await page.getByRole('alertdialog').getByRole('button', { name: /^Stop VM/ }).click();
    await page.locator('[data-vm-state="stopped"]').waitFor({ timeout: T() });
    await page.locator('button[data-verb="start"]').click();
    await page.getByRole('alertdialog').getByRole('button', { name: /^Start VM/ }).click();
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    assert.deepEqual(await target.mutatingCalls(), [...callsBefore, 'qm reset 102', 'qm stop 102', 'qm start 102']);
    await page.keyboard.press('Escape');
    // The verb is in the session's transcript too.
    await page.locator('[data-kind="verb"]').first().waitFor({ timeout: T() });
    assert.match(await page.locator('[data-kind="verb"]').first().textContent(), /reset/);
    void sid;
    await page.close();
  });

  // Operator presence with the browser's own virtual authenticator
  // (DevTools WebAuthn domain): enroll this phone with the printed code, a
  // cancelled prompt runs nothing and says so, one tap tries again, and
  // passkey sign-in without the edge's header.
  test('passkey-enroll-cancel-retry-sign-in', async () => {
    if (!target.enrollCode) return; // the stand-in has no keyholder
    const page = await browser.context.newPage();
    const { cdp, authenticatorId } = await addPasskey(page);
    await page.goto(`${target.url}/#/enroll`);
    await page.getByLabel('Your name').fill('phone');
    await page.getByLabel('Enrollment code').fill(target.enrollCode);
    await shot(page, '20-enroll');
    await page.getByRole('button', { name: 'Enroll' }).click();
    const line = page.locator('[data-operators-line]');
    await page.locator('[data-operators-line], .enroll [role="alert"]').first().waitFor({ timeout: T() });
    const refused = page.locator('.enroll [role="alert"]');
    assert.equal(await refused.count(), 0, `enrollment refused: ${await refused.first().textContent().catch(() => '')}`);
    assert.match(await line.textContent(), /^phone [A-Za-z0-9_-]+ [A-Za-z0-9_-]+$/);
    await shot(page, '21-enrolled');
    await page.getByRole('button', { name: 'Done' }).click();
    await page.locator('textarea#prompt').waitFor({ timeout: T() });

    // A cancelled prompt: nothing runs, the sheet says so and offers one
    // tap to ask again.
    const callsBefore = await target.mutatingCalls();
    await page.getByRole('button', { name: 'VM power controls' }).click();
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
    await page.locator('button[data-verb="stop"]').click();
    await page.getByRole('alertdialog').getByRole('button', { name: /^Stop VM/ }).click();
    const alert = page.getByRole('region', { name: 'Result of stop' }).getByRole('alert');
    await alert.waitFor({ timeout: T() });
    assert.match(await alert.textContent(), /Cancelled/);
    assert.deepEqual(await target.mutatingCalls(), callsBefore, 'a cancelled prompt runs nothing');
    await shot(page, '22-passkey-cancelled');
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
    await page.getByRole('button', { name: /^Try again: Stop/ }).click();
    await page.locator('[data-vm-state="stopped"]').waitFor({ timeout: T() });
    await page.locator('button[data-verb="start"]').click();
    await page.getByRole('alertdialog').getByRole('button', { name: /^Start VM/ }).click();
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    assert.deepEqual(await target.mutatingCalls(), [...callsBefore, 'qm stop 102', 'qm start 102']);
    await page.close();

    // Passkey sign-in, with nothing in front of the web to vouch for us.
    const p2 = await browser.context.newPage();
    await addPasskey(p2, target.passkey);
    await p2.goto(target.signinURL);
    await p2.getByRole('button', { name: 'Sign in with passkey' }).click({ timeout: T() });
    await p2.locator('textarea#prompt').waitFor({ timeout: T() });
    await shot(p2, '23-signed-in');
    await p2.close();
  });

  test('approval-approve-runs-verb', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    const sid = await newSession(page);
    const callsBefore = await target.mutatingCalls();
    await target.requestApproval(page, sid);
    const card = page.locator('[data-kind="approval"]').first();
    await card.getByRole('button', { name: /^Approve/ }).waitFor({ timeout: 120_000 });
    assert.match(await card.textContent(), /reset/);
    assert.deepEqual(await target.mutatingCalls(), callsBefore, 'nothing runs before the tap');
    await shot(page, '08-approval');
    await card.getByRole('button', { name: /^Approve/ }).click();
    await card.getByText('approved').waitFor({ timeout: T() });
    const verb = page.locator('[data-kind="verb"]').first();
    await verb.waitFor({ timeout: T() });
    assert.match(await verb.textContent(), /reset/);
    assert.deepEqual(await target.mutatingCalls(), [...callsBefore, 'qm reset 102'], 'approve ran qm reset');
    await shot(page, '09-approved');
    await page.close();
  });

  test('approval-deny-runs-nothing', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    const sid = await newSession(page);
    const callsBefore = await target.mutatingCalls();
    await target.requestApproval(page, sid);
    const card = page.locator('[data-kind="approval"]').first();
    await card.getByRole('button', { name: 'Deny' }).click({ timeout: 120_000 });
    await card.getByText('denied').waitFor({ timeout: T() });
    await waitTurnEnd(page);
    assert.deepEqual(await target.mutatingCalls(), callsBefore, 'a denied reset never reaches the host');
    await page.close();
  });

  // The operator in the loop (docs/operator-loop.md): the mode switch in
  // the header, a permission card in careful mode, Allow and Deny, and a
  // message sent into a running turn.
  async function carefulSession(page) {
    const sid = await newSession(page);
    const mode = page.getByRole('combobox', { name: 'Agent mode' });
    await mode.waitFor({ timeout: T() });
    assert.equal(await mode.inputValue(), 'autopilot', "the stack's default mode");
    await mode.selectOption('careful');
    await page.waitForFunction(
      async (sid) => (await (await fetch(`/api/sessions/${sid}`)).json()).mode === 'careful',
      sid,
      { timeout: T() },
    );
    return sid;
  }

  test('permission-allow', async (t) => {
    if (!target.operatorLoop) return t.skip('the stand-in has no agent modes');
    const { page } = await open(browser.context, target.url);
    await carefulSession(page);
    await target.prepare('permission');
    await page.locator('#prompt').fill('leave a marker');
    await page.keyboard.press('Enter');
    const card = page.locator('[data-kind="permission"]').first();
    await card.getByRole('button', { name: 'Allow' }).waitFor({ timeout: 120_000 });
    assert.match(await card.locator('pre').textContent(), /^touch \/tmp\/breakglass-e2e-permission && echo touched$/, 'the whole command, as it will run');
    assert.equal(await card.locator('pre').evaluate((e) => getComputedStyle(e).fontFamily.includes('mono')), true, 'in monospace');
    assert.match(await card.textContent(), /in \//, 'the folder it runs in');
    const [deny, allow] = [await card.getByRole('button', { name: 'Deny' }).boundingBox(), await card.getByRole('button', { name: 'Allow' }).boundingBox()];
    assert.ok(allow.height >= 48 && deny.height >= 48, 'big targets');
    assert.ok(allow.x - (deny.x + deny.width) >= 40, 'Allow and Deny far apart');
    await shot(page, '20-permission');
    await card.getByRole('button', { name: 'Allow' }).click();
    await card.getByText(/Allowed/).waitFor({ timeout: T() });
    await waitTurnEnd(page);
    await page.close();
  });

  test('permission-deny-with-note', async (t) => {
    if (!target.operatorLoop) return t.skip('the stand-in has no agent modes');
    const { page } = await open(browser.context, target.url);
    await carefulSession(page);
    await target.prepare('permission');
    await page.locator('#prompt').fill('leave a marker');
    await page.keyboard.press('Enter');
    const card = page.locator('[data-kind="permission"]').first();
    await card.getByRole('button', { name: 'Deny' }).waitFor({ timeout: 120_000 });
    await card.getByRole('textbox').fill('not in /tmp, please');
    await card.getByRole('button', { name: 'Deny' }).click();
    await card.getByText(/Denied/).waitFor({ timeout: T() });
    await waitTurnEnd(page);
    assert.ok(await target.operatorLoop.modelSaw('not in /tmp, please'), 'the model read the note');
    await page.close();
  });

  test('steer-a-running-turn', async (t) => {
    if (!target.operatorLoop) return t.skip('the stand-in has no steering');
    const { page } = await open(browser.context, target.url);
    await newSession(page);
    await target.prepare('steer');
    await page.locator('#prompt').fill('check the load');
    await page.keyboard.press('Enter');
    await page.locator('[data-kind="tool"]').first().waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#prompt').isEnabled(), true, 'the composer stays open while the turn runs');
    await page.locator('#prompt').fill('also check dmesg');
    await page.getByRole('button', { name: 'Steer', exact: true }).click();
    await page.getByText('sent during the turn').waitFor({ timeout: T() });
    await waitTurnEnd(page);
    assert.ok(await target.operatorLoop.modelSaw('also check dmesg'), 'the model saw it within the same turn');
    const users = await page.locator('[data-kind="user"]').allTextContents();
    assert.equal(users.filter((u) => u.includes('also check dmesg')).length, 1, 'once in the transcript');
    assert.equal(await page.locator('[data-kind="done"]').count(), 1, 'one turn');
    await page.close();
  });

  test('prompt-html-renders-as-text', async () => {
    const { page, dialogs } = await open(browser.context, target.url, target.passkey);
    await newSession(page);
    const evil = '<img src=x onerror=alert(1)>';
    await target.prepare('diagnose');
    await page.locator('#prompt').fill(evil);
    await page.keyboard.press('Enter');
    const user = page.locator('[data-kind="user"]').first();
    await user.waitFor({ timeout: T() });
    assert.equal(await user.locator('p').textContent(), evil);
    assert.equal(await page.locator('.msgs img').count(), 0, 'no element was created from the text');
    await waitTurnEnd(page);
    assert.deepEqual(dialogs, [], 'no script ran');
    await page.close();
  });

  test('shift-enter-newline', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    await newSession(page);
    await page.locator('#prompt').click();
    await page.keyboard.type('line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    assert.equal(await page.locator('#prompt').inputValue(), 'line one\nline two');
    assert.equal(await page.locator('[data-kind="user"]').count(), 0, 'Shift+Enter did not send');
    await page.close();
  });

  // composerWithin waits (at most 5 s) for the composer's bottom edge to be
  // inside a viewport height h once the page has laid out after a resize.
  async function composerWithin(page, h) {
    await page
      .waitForFunction(
        (limit) => {
          const c = document.querySelector('.composer');
          return c !== null && c.getBoundingClientRect().bottom <= limit + 0.5;
        },
        h,
        { timeout: 5000 },
      )
      .catch(() => {});
  }

  test('narrow-320-no-horizontal-scroll', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    await newSession(page);
    await page.setViewportSize({ width: 320, height: 640 });
    await page.locator('#prompt').fill('x'.repeat(400));
    const w = await noHorizontalScroll(page);
    assert.ok(w.scrollWidth <= w.innerWidth && w.bodyScrollWidth <= w.innerWidth, JSON.stringify(w));
    // The composer is inside the viewport (the layout is 100dvh, so it sits
    // above the on-screen keyboard when the viewport shrinks).
    await composerWithin(page, 640);
    const box = await page.locator('.composer').boundingBox();
    assert.ok(box.y + box.height <= 640 + 0.5, `composer bottom ${box.y + box.height} within 640`);
    await page.setViewportSize({ width: 320, height: 360 }); // a keyboard takes half the screen
    // The page lays out again after the resize: wait for that frame (it
    // never comes when the layout is wrong, and the assertion says so).
    await composerWithin(page, 360);
    const small = await page.locator('.composer').boundingBox();
    assert.ok(small.y + small.height <= 360 + 0.5, `composer bottom ${small.y + small.height} within 360`);
    await shot(page, '10-narrow-320');
    await page.close();
  });

  test('first-contentful-paint-slow-4g', async () => {
    // Reported, not asserted against a time: docs/performance.md "UI".
    const page = await browser.context.newPage();
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Network.emulateNetworkConditions', SLOW_4G);
    await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
    await page.goto(target.url);
    await page.locator('textarea#prompt').waitFor({ timeout: 60_000 });
    const m = await page.evaluate(() => {
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      const nav = performance.getEntriesByType('navigation')[0];
      return { fcpMs: fcp ? Math.round(fcp.startTime) : null, domContentLoadedMs: Math.round(nav.domContentLoadedEventEnd), loadMs: Math.round(nav.loadEventEnd) };
    });
    assert.ok(m.fcpMs > 0, `first-contentful-paint measured: ${JSON.stringify(m)}`);
    const report = { profile: { ...SLOW_4G, cpuSlowdown: 4 }, ...m };
    mkdirSync(OUT, { recursive: true });
    writeFileSync(`${OUT}perf.json`, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`# first-contentful-paint under slow 4G: ${m.fcpMs} ms (DOMContentLoaded ${m.domContentLoadedMs} ms, load ${m.loadMs} ms)`);
    await page.close();
  });

  test('sessions-search-rename-archive-export', async (t) => {
    if (!target.manageSessions) return t.skip('the stand-in has no session management');
    const { page, errors } = await open(browser.context, target.url, target.passkey);
    const sid = await newSession(page);
    await target.prepare('diagnose');
    const prompt = `the disk of devvm is full ${sid.slice(0, 8)}`;
    await page.locator('#prompt').fill(prompt);
    await page.keyboard.press('Enter');
    await waitTurnEnd(page);
    await newSession(page); // another one, that the search must leave out

    const sheet = page.getByRole('dialog', { name: 'Sessions' });
    const row = sheet.locator(`li[data-session="${sid}"]`);
    const others = sheet.locator('li[data-session]');
    await page.getByRole('button', { name: 'Sessions' }).click();
    await sheet.getByRole('searchbox', { name: 'Search sessions' }).fill(sid.slice(0, 8));
    await page.waitForFunction(() => document.querySelectorAll('dialog li[data-session]').length === 1, null, { timeout: T() });
    await row.waitFor();
    assert.equal(await others.count(), 1, 'the search finds the session by its prompt, and only it');
    await shot(page, '13-sessions-search');
    assert.deepEqual(await axe(page), [], 'sessions search: no serious axe violation');

    // Rename.
    await row.getByRole('button', { name: /^Actions for/ }).click();
    await row.getByRole('button', { name: 'Rename' }).click();
    await row.getByRole('textbox', { name: 'New title' }).fill(`Disk incident ${sid.slice(0, 8)}`);
    await row.getByRole('button', { name: 'Save' }).click();
    await row.getByText(`Disk incident ${sid.slice(0, 8)}`).waitFor({ timeout: T() });
    assert.deepEqual(await smallTargets(page), [], 'session actions: tap targets are at least 44px');

    // Export: the phone's share sheet gets the Markdown record where the
    // browser can share files (stood in for: headless Chromium has no
    // share sheet); otherwise the file is downloaded.
    await page.evaluate(() => {
      window.shared = [];
      navigator.canShare = () => true;
      navigator.share = async ({ files }) => { window.shared.push({ name: files[0].name, text: await files[0].text() }); };
    });
    await row.getByRole('button', { name: 'Export', exact: true }).click();
    await row.getByText('Shared.').waitFor({ timeout: T() });
    const [shared] = await page.evaluate(() => window.shared);
    assert.match(shared.name, /^breakglass-\d{8}-[0-9a-f]{8}\.md$/);
    assert.match(shared.text, new RegExp(`# Incident record: Disk incident ${sid.slice(0, 8)}`));
    assert.ok(shared.text.includes(`> ${prompt}`), 'the prompt is in the record');
    assert.match(shared.text, /prompt by /);
    assert.ok(shared.text.includes("echo 'up 2 days, load average: 0.08'") || /\*\*Command\*\*/.test(shared.text), 'the command is in the record');
    await page.evaluate(() => { delete navigator.share; navigator.canShare = undefined; });
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: T() }),
      row.getByRole('button', { name: 'JSON', exact: true }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^breakglass-\d{8}-[0-9a-f]{8}\.json$/);
    const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
    assert.equal(exported.id, sid);
    assert.equal(exported.events.length, exported.last_event_id);
    assert.deepEqual(exported.events.map((e) => e.id), exported.events.map((_, i) => i + 1));

    // Archive: gone from the list, found under Archived, restored.
    await row.getByRole('button', { name: 'Archive' }).click();
    await row.waitFor({ state: 'detached', timeout: T() });
    await sheet.getByRole('button', { name: 'Archived' }).click();
    await row.waitFor({ timeout: T() });
    await shot(page, '14-sessions-archived');
    await row.getByRole('button', { name: /^Actions for/ }).click();
    await row.getByRole('button', { name: 'Restore' }).click();
    await row.waitFor({ state: 'detached', timeout: T() });
    await sheet.getByRole('button', { name: 'Archived' }).click();
    await row.waitFor({ timeout: T() });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('recovery-ladder', async (t) => {
    if (!target.ladder) {
      t.skip('the stand-in has no recovery ladder');
      return;
    }
    const { page, errors } = await open(browser.context, target.url, target.passkey);
    // The landing view leads with the health ladder, without a tap.
    const ladder = page.getByRole('region', { name: 'Health ladder' });
    await ladder.locator('[data-rung="pve"][data-ok="true"]').waitFor({ timeout: T() });
    assert.deepEqual(await ladder.locator('[data-rung]').evaluateAll((els) => els.map((e) => e.dataset.rung)),
      ['pve', 'vm', 'guest_agent', 'ssh'], 'the rungs, top to bottom');
    assert.match(await ladder.locator('[data-rung="vm"]').textContent(), /running/);
    await shot(page, '15-ladder');
    assert.deepEqual(await axe(page), [], 'landing with the ladder: no serious axe violation');

    await newSession(page);
    await page.getByRole('button', { name: 'VM power controls' }).click();
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    const look = page.getByRole('region', { name: 'Look' });
    const act = page.getByRole('region', { name: 'Act' });
    assert.ok(await look.locator('button[data-verb="screenshot"]').isVisible(), 'screenshot is a look');
    assert.ok(await act.locator('button[data-verb="guest-exec"]').isVisible(), 'guest-exec is an act');
    assert.equal(await look.locator('button[data-verb="reset"]').count(), 0, 'reset is not a look');

    // The screenshot shows inline and zooms on tap.
    const callsBefore = await target.mutatingCalls();
    await look.locator('button[data-verb="screenshot"]').click();
    const shotResult = page.getByRole('region', { name: 'Result of screenshot' });
    const img = shotResult.locator('img[data-screenshot]');
    await img.waitFor({ timeout: T() });
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
    assert.equal(await img.evaluate((el) => el.naturalWidth), 1024, "the VM's 1024×768 screen");
    const inline = await img.evaluate((el) => el.getBoundingClientRect().width);
    assert.ok(inline <= 390, `inline it fits the phone (${inline}px)`);
    await shot(page, '16-screenshot');
    await shotResult.getByRole('button', { name: 'Zoom the screenshot' }).click();
    const zoom = page.getByRole('dialog', { name: 'Screenshot, full size' });
    await zoom.waitFor();
    const zoomed = await zoom.locator('img[data-screenshot-zoomed]').evaluate((el) => el.getBoundingClientRect().width);
    assert.ok(zoomed > inline * 2, `zoomed it is larger (${zoomed}px > ${inline}px)`);
    await shot(page, '17-screenshot-zoomed');
    await zoom.getByRole('button', { name: 'Close' }).click();
    await zoom.waitFor({ state: 'detached' });

    // guest-exec: a form with one field per argument, then a confirm that
    // shows the exact argv, then the output, also in the transcript.
    await act.locator('button[data-verb="guest-exec"]').click();
    const form = page.getByRole('form', { name: 'Run a command in the guest' });
    await form.locator('[data-argv="0"]').fill('systemctl');
    await form.getByRole('button', { name: 'Add an argument' }).click();
    await form.locator('[data-argv="1"]').fill('restart');
    await form.getByRole('button', { name: 'Add an argument' }).click();
    await form.locator('[data-argv="2"]').fill('ssh; reboot');
    await form.getByRole('button', { name: 'Review' }).click();
    const confirm = page.getByRole('alertdialog');
    await confirm.waitFor();
    assert.deepEqual(await confirm.locator('code[data-arg]').allTextContents(), ['systemctl', 'restart', 'ssh; reboot'],
      'the confirm shows the argv, one argument per line');
    await shot(page, '18-guest-exec-confirm');
    assert.deepEqual(await target.mutatingCalls(), callsBefore, 'nothing runs before the confirm');
    await confirm.getByRole('button', { name: /^Run in VM/ }).click();
    const execResult = page.getByRole('region', { name: 'Result of guest-exec' });
    await execResult.waitFor({ timeout: T() });
    assert.match(await execResult.textContent(), /exit 0/);
    assert.deepEqual(await target.mutatingCalls(), [...callsBefore, 'qm guest exec 102 --timeout 60 -- systemctl restart ssh; reboot'],
      'the host ran the argv as three arguments');
    await page.keyboard.press('Escape');
    const card = page.locator('[data-kind="verb"]').filter({ hasText: 'guest-exec' }).first();
    await card.waitFor({ timeout: T() });
    assert.match(await card.textContent(), /"systemctl","restart","ssh; reboot"/);
    const shotCard = page.locator('[data-kind="verb"]').filter({ hasText: 'screenshot' }).first();
    await shotCard.locator('img[data-screenshot]').waitFor({ timeout: T() });
    assert.match(await shotCard.locator('img[data-screenshot]').getAttribute('src'), /^\/api\/sessions\/[0-9a-f-]{36}\/images\/screenshot-/,
      "the transcript shows the web's stored copy");
    await shot(page, '19-transcript-ladder');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('sandbox-banner', async () => {
    // The page says when the agent's sandbox is partial or missing, from
    // /readyz: nothing for the server's own (full) sandbox, a banner for a
    // partial one.
    const page = await browser.context.newPage();
    const ready = page.waitForResponse((r) => new URL(r.url()).pathname === '/readyz');
    await page.goto(target.url);
    const own = await (await ready).json().catch(() => null);
    await page.locator('textarea#prompt').waitFor({ timeout: T() });
    if (own?.sandbox) assert.equal(own.sandbox.level, 'full', 'the test stack runs with full Landlock');
    assert.equal(await page.locator('.banner[role="alert"]').count(), 0, 'no banner for a full sandbox');
    await page.close();

    const partial = await browser.context.newPage();
    await partial.route('**/readyz', (route) => route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({
        ok: false,
        error: 'keyholder not answering',
        sandbox: { abi: 3, kernel_abi: 7, level: 'partial', missing: ["TCP connect and bind (reaching the web's port)"] },
      }),
    }));
    await partial.goto(target.url);
    const banner = partial.locator('.banner[role="alert"]');
    await banner.waitFor({ timeout: T() });
    assert.match(await banner.textContent(), /partial \(Landlock ABI 3\)/);
    assert.match(await banner.textContent(), /TCP connect and bind/);
    const w = await noHorizontalScroll(partial);
    assert.ok(w.scrollWidth <= w.innerWidth, `the banner fits the phone (${JSON.stringify(w)})`);
    await shot(partial, '20-sandbox-banner');
    await partial.close();
  });

  test('accessibility', async () => {
    const { page } = await open(browser.context, target.url, target.passkey);
    await newSession(page);
    await target.prepare('diagnose');
    await page.locator('#prompt').fill('check the devvm');
    await page.keyboard.press('Enter');
    await waitTurnEnd(page);
    assert.deepEqual(await axe(page), [], 'transcript: no serious axe violation');
    assert.deepEqual(await smallTargets(page), [], 'tap targets are at least 44px');
    await page.getByRole('button', { name: 'VM power controls' }).click();
    await page.locator('[data-vm-state="running"]').waitFor({ timeout: T() });
    assert.deepEqual(await axe(page), [], 'VM sheet: no serious axe violation');
    assert.deepEqual(await smallTargets(page), [], 'VM sheet: tap targets are at least 44px');
    await page.locator('button[data-verb="cycle"]').click();
    await page.getByRole('alertdialog').waitFor();
    assert.deepEqual(await axe(page), [], 'confirm: no serious axe violation');
    await page.getByRole('alertdialog').getByRole('button', { name: 'Cancel' }).click();
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: 'New session' }).waitFor();
    assert.deepEqual(await axe(page), [], 'sessions sheet: no serious axe violation');
    await page.close();
  });
}

/** T is the default wait; tests stretch it when the CLI runs for real. */
function T() {
  return 30_000;
}
