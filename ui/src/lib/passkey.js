// The browser's side of operator presence: turning the web's WebAuthn
// options (base64url JSON) into navigator.credentials calls and their
// answers back into JSON, and saying plainly what went wrong. The keyholder
// alone verifies what comes out of here.

/** enc encodes bytes as unpadded base64url. */
export function enc(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** dec decodes unpadded base64url into bytes. */
export function dec(s) {
  const b = atob(String(s).replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

/** PasskeyError says why no assertion came: kind is one of KINDS. */
export class PasskeyError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'PasskeyError';
    this.kind = kind;
  }
}

/** The kinds of PasskeyError, with what the operator reads. */
export const MESSAGES = Object.freeze({
  cancelled: 'Cancelled: the passkey was not used, so nothing ran.',
  none: 'No passkey is enrolled for breakglass yet: enroll this phone first (Enroll this phone, with the code from the keyholder’s log).',
  expired: 'The passkey request expired before it was answered. Try again: one tap asks once more.',
  unsupported: 'This browser cannot use a passkey here (it needs HTTPS, or localhost).',
  refused: 'The keyholder refused the passkey.',
});

/** requestOptions turns the web's request options into get()'s argument. */
export function requestOptions(o) {
  const pk = o.publicKey;
  return {
    publicKey: {
      challenge: dec(pk.challenge),
      rpId: pk.rpId,
      allowCredentials: (pk.allowCredentials ?? []).map((c) => ({ type: 'public-key', id: dec(c.id) })),
      userVerification: pk.userVerification ?? 'required',
      timeout: pk.timeout ?? 60000,
    },
  };
}

/** presenceOf is the JSON the keyholder checks, from get()'s answer. */
export function presenceOf(challengeId, cred) {
  const r = cred.response;
  return {
    challenge_id: challengeId,
    credential_id: enc(cred.rawId),
    client_data_json: enc(r.clientDataJSON),
    authenticator_data: enc(r.authenticatorData),
    signature: enc(r.signature),
  };
}

/** creationOptions turns the web's creation options into create()'s argument. */
export function creationOptions(o) {
  const pk = o.publicKey;
  return {
    publicKey: {
      ...pk,
      challenge: dec(pk.challenge),
      user: { ...pk.user, id: dec(pk.user.id) },
    },
  };
}

/** registrationOf is the JSON the keyholder checks, from create()'s answer. */
export function registrationOf(cred) {
  return {
    credential_id: enc(cred.rawId),
    client_data_json: enc(cred.response.clientDataJSON),
    attestation_object: enc(cred.response.attestationObject),
  };
}

/** kindOf names why a WebAuthn call failed. */
export function kindOf(e) {
  if (e instanceof PasskeyError) return e.kind;
  if (e?.name === 'NotAllowedError' || e?.name === 'AbortError') return 'cancelled';
  if (e?.name === 'SecurityError' || e?.name === 'NotSupportedError') return 'unsupported';
  // A keyholder refusal relayed by the web (api.js's ApiError).
  if (e?.reason === 'challenge_expired' || e?.reason === 'challenge_used' || e?.reason === 'unknown_challenge') return 'expired';
  if (e?.code === 'presence_refused' || e?.code === 'presence_required') return 'refused';
  return '';
}

/** explain is the sentence for an error of sign or register. */
export function explain(e) {
  const kind = kindOf(e);
  if (kind === 'refused') return `${MESSAGES.refused} ${e.message ?? ''}`.trim();
  return MESSAGES[kind] ?? e?.message ?? String(e);
}

/**
 * sign asks the web for options (getOptions()), has the authenticator sign
 * them, and returns the presence JSON. It throws a PasskeyError, or the
 * getOptions error.
 */
export async function sign(getOptions, creds = globalThis.navigator?.credentials) {
  if (!creds?.get || !globalThis.PublicKeyCredential) throw new PasskeyError('unsupported', MESSAGES.unsupported);
  const o = await getOptions();
  if (!o?.publicKey?.allowCredentials?.length) throw new PasskeyError('none', MESSAGES.none);
  let cred;
  try {
    cred = await creds.get(requestOptions(o));
  } catch (e) {
    const kind = kindOf(e) || 'cancelled';
    throw new PasskeyError(kind, MESSAGES[kind]);
  }
  if (!cred) throw new PasskeyError('cancelled', MESSAGES.cancelled);
  return presenceOf(o.challenge_id, cred);
}

/** register runs create() for the web's creation options. */
export async function register(o, creds = globalThis.navigator?.credentials) {
  if (!creds?.create || !globalThis.PublicKeyCredential) throw new PasskeyError('unsupported', MESSAGES.unsupported);
  let cred;
  try {
    cred = await creds.create(creationOptions(o));
  } catch (e) {
    const kind = kindOf(e) || 'cancelled';
    throw new PasskeyError(kind, MESSAGES[kind]);
  }
  if (!cred) throw new PasskeyError('cancelled', MESSAGES.cancelled);
  return registrationOf(cred);
}
