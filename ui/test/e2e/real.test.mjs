// The suite against the real stack that ui/e2e_test.go (go test ./ui/)
// starts: the web binary, the real claude CLI, the scripted Messages API
// double, an edge stand-in and a fake keyholder. It gives the page's URL
// and a control URL in the environment.
import { suite } from './suite.mjs';

const url = process.env.BREAKGLASS_E2E_URL;
const control = process.env.BREAKGLASS_E2E_CONTROL;
if (!url || !control) {
  throw new Error('BREAKGLASS_E2E_URL and BREAKGLASS_E2E_CONTROL are unset: run this through go test ./ui/ (make test)');
}

async function post(path) {
  const res = await fetch(`${control}${path}`, { method: 'POST' });
  if (!res.ok) throw new Error(`control ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

suite(async () => {
  // The passkey enrolled before start (for every page's virtual
  // authenticator), the enrollment code, and the origin without the edge.
  const { credential, enrollCode, signinURL } = await (await fetch(`${control}/passkey`)).json();
  return {
  url,
  passkey: { credential },
  enrollCode,
  signinURL,
  prepare: (kind) => post(`/turn/${kind}`),
  cutStreams: async () => (await post('/cut')).cut,
  mutatingCalls: async () => (await fetch(`${control}/qm`)).json(),
  async requestApproval(page) {
    await post('/turn/approval');
    await page.locator('#prompt').fill('The devvm is frozen. Reset it if you must.');
    await page.keyboard.press('Enter');
  },
  push: {
    // A subscription of the push service double (endpoint and keys).
    subscription: async () => (await fetch(`${control}/push/subscription`)).json(),
    // What the double received and decrypted, oldest first.
    delivered: async () => (await fetch(`${control}/push/delivered`)).json(),
  },
  toolCommand: /echo 'up 2 days, load average: 0\.08'/,
  toolOutput: /up 2 days, load average: 0\.08/,
  manageSessions: true,
  // The operator in the loop: modes, permission cards, steering.
  operatorLoop: {
    modelSaw: async (text) => (await (await fetch(`${control}/model-saw?text=${encodeURIComponent(text)}`)).json()).saw,
  },
  ladder: true,
  };
});
