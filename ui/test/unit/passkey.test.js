// src/lib/passkey.js with a fake navigator.credentials: the JSON both ways,
// and the plain messages for a cancelled prompt, no passkey, an expired
// challenge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pk from '../../src/lib/passkey.js';

globalThis.PublicKeyCredential = globalThis.PublicKeyCredential ?? function PublicKeyCredential() {};

const OPTS = {
  challenge_id: 'cid',
  publicKey: { challenge: 'AQID', rpId: 'localhost', allowCredentials: [{ type: 'public-key', id: '_-8' }], userVerification: 'required', timeout: 60000 },
};

test('base64url round trip', () => {
  for (const bytes of [[], [0], [251, 255], [1, 2, 3, 4, 5]]) {
    const s = pk.enc(new Uint8Array(bytes));
    assert.doesNotMatch(s, /[+/=]/);
    assert.deepEqual([...pk.dec(s)], bytes);
  }
  assert.equal(pk.enc(new Uint8Array([251, 255])), '-_8');
});

test('sign sends the options and returns the presence JSON', async () => {
  let got;
  const creds = {
    get: async (o) => {
      got = o;
      return { rawId: new Uint8Array([9]).buffer, response: { clientDataJSON: new Uint8Array([1]).buffer, authenticatorData: new Uint8Array([2]).buffer, signature: new Uint8Array([3]).buffer } };
    },
  };
  const p = await pk.sign(async () => OPTS, creds);
  assert.deepEqual([...got.publicKey.challenge], [1, 2, 3]);
  assert.equal(got.publicKey.rpId, 'localhost');
  assert.equal(got.publicKey.userVerification, 'required');
  assert.deepEqual([...got.publicKey.allowCredentials[0].id], [255, 239]);
  assert.deepEqual(p, { challenge_id: 'cid', credential_id: 'CQ', client_data_json: 'AQ', authenticator_data: 'Ag', signature: 'Aw' });
});

test('cancelled, none, expired and unsupported say so plainly', async () => {
  const cancel = { get: async () => { throw Object.assign(new Error('x'), { name: 'NotAllowedError' }); } };
  await assert.rejects(pk.sign(async () => OPTS, cancel), (e) => e.kind === 'cancelled' && /Cancelled/.test(e.message));
  const none = { ...OPTS, publicKey: { ...OPTS.publicKey, allowCredentials: [] } };
  await assert.rejects(pk.sign(async () => none, cancel), (e) => e.kind === 'none' && /No passkey is enrolled/.test(e.message));
  await assert.rejects(pk.sign(async () => OPTS, {}), (e) => e.kind === 'unsupported');
  const expired = Object.assign(new Error('403: operator presence: the challenge expired'), { code: 'presence_refused', reason: 'challenge_expired' });
  assert.equal(pk.kindOf(expired), 'expired');
  assert.match(pk.explain(expired), /expired.*Try again/);
  const refused = Object.assign(new Error('403: operator presence: bad'), { code: 'presence_refused', reason: 'bad_signature' });
  assert.match(pk.explain(refused), /refused/);
  assert.equal(pk.kindOf(new Error('other')), '');
});

test('register sends creation options and returns the registration JSON', async () => {
  let got;
  const creds = {
    create: async (o) => {
      got = o;
      return { rawId: new Uint8Array([7]).buffer, response: { clientDataJSON: new Uint8Array([1]).buffer, attestationObject: new Uint8Array([4]).buffer } };
    },
  };
  const r = await pk.register({ enrollment_id: 'e', publicKey: { challenge: 'AQID', rp: { id: 'localhost', name: 'breakglass' }, user: { id: 'BQY', name: 'bob', displayName: 'bob' } } }, creds);
  assert.deepEqual([...got.publicKey.user.id], [5, 6]);
  assert.deepEqual(r, { credential_id: 'Bw', client_data_json: 'AQ', attestation_object: 'BA' });
});
