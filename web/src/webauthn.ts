// WebAuthn for the owner's passkey, as the PC checks it (docs/protocol.md sections 6.5 and
// 6.11; crates/agent/src/owner.rs): the assertion → `user_sig` encoding, the same checks
// the agent makes (so the app can say what is wrong before a PC refuses it with 2011),
// P-256 keys as SubjectPublicKeyInfo DER, ECDSA signatures in DER and raw form, and the
// JSON shapes the server's passkey ceremonies use (crates/server/src/routes/passkeys.rs,
// webauthn-rs: binary fields as unpadded base64url). Pure functions, no DOM calls, so
// they are unit-tested in Node (webauthn.test.ts).

import { b64urlDecode, b64urlEncode } from "./b64";

/** `user_sig` of kind `webauthn-es256`: each member as the authenticator returned it. */
export interface WebauthnUserSig {
  kind: "webauthn-es256";
  /** The credential id, unpadded base64url. */
  kid: string;
  authenticator_data: string;
  client_data_json: string;
  /** ECDSA P-256 / SHA-256, ASN.1 DER. */
  signature: string;
}

/** What `navigator.credentials.get()` answers, reduced to the bytes that matter. */
export interface AssertionParts {
  rawId: ArrayBuffer | Uint8Array;
  authenticatorData: ArrayBuffer | Uint8Array;
  clientDataJSON: ArrayBuffer | Uint8Array;
  signature: ArrayBuffer | Uint8Array;
}

/** Authenticator-data flags (WebAuthn §6.1). */
export const FLAG_UP = 0x01;
export const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

/** COSE algorithm ES256: the only one a PC pins. */
export const COSE_ES256 = -7;

/** The longest credential id a PC pins (it must fit a key id). */
export const MAX_CREDENTIAL_ID = 48;

const bytes = (b: ArrayBuffer | Uint8Array): Uint8Array<ArrayBuffer> =>
  b instanceof Uint8Array ? new Uint8Array(b) : new Uint8Array(b.slice(0));

async function sha256(b: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b));
}

/** The `user_sig` of an assertion (docs/protocol.md section 6.11). */
export function userSigFromAssertion(a: AssertionParts): WebauthnUserSig {
  return {
    kind: "webauthn-es256",
    kid: b64urlEncode(bytes(a.rawId)),
    authenticator_data: b64urlEncode(bytes(a.authenticatorData)),
    client_data_json: b64urlEncode(bytes(a.clientDataJSON)),
    signature: b64urlEncode(bytes(a.signature)),
  };
}

/** The relying party a PC expects: the server it paired with (`https://host[:port]`, host). */
export interface RelyingParty {
  origin: string;
  rpId: string;
}

const between = (b: Uint8Array | null, lo: number, hi: number) => b !== null && b.length >= lo && b.length <= hi;

/**
 * What a PC would object to in this assertion over `statement` (null: nothing), short of
 * the signature itself (verifyAssertion checks that with the public key): the shape
 * limits of section 6.11, clientData `type` `webauthn.get`, `challenge` =
 * b64url(SHA-256(statement)), `origin` the server's, `crossOrigin` not true, rpIdHash =
 * SHA-256(rpId), flags UP and UV.
 */
export async function checkAssertion(
  statement: Uint8Array<ArrayBuffer>,
  sig: WebauthnUserSig,
  rp: RelyingParty,
): Promise<string | null> {
  const kid = b64urlDecode(sig.kid);
  const authData = b64urlDecode(sig.authenticator_data);
  const clientData = b64urlDecode(sig.client_data_json);
  const signature = b64urlDecode(sig.signature);
  if (!between(kid, 1, MAX_CREDENTIAL_ID)) return `the credential id must be 1-${MAX_CREDENTIAL_ID} bytes`;
  if (!between(authData, 37, 1024)) return "authenticator data must be 37-1024 bytes";
  if (!between(clientData, 1, 2048)) return "clientDataJSON must be 1-2048 bytes";
  if (!between(signature, 8, 72)) return "the signature must be 8-72 bytes";
  let cd: Record<string, unknown>;
  try {
    const v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(clientData!)) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) return "clientDataJSON is not a JSON object";
    cd = v as Record<string, unknown>;
  } catch {
    return "clientDataJSON is not JSON";
  }
  if (cd.type !== "webauthn.get") return "clientData type is not webauthn.get";
  if (cd.challenge !== b64urlEncode(await sha256(statement))) return "the challenge is not the statement's hash";
  if (cd.origin !== rp.origin) return `the origin ${String(cd.origin)} is not the server's (${rp.origin})`;
  if (cd.crossOrigin === true) return "a cross-origin assertion";
  const rpIdHash = await sha256(new TextEncoder().encode(rp.rpId));
  if (!equal(authData!.subarray(0, 32), rpIdHash)) return `the assertion is not for ${rp.rpId}`;
  const flags = authData![32]!;
  if (!(flags & FLAG_UP)) return "the authenticator did not check that you are present (UP)";
  if (!(flags & FLAG_UV)) return "the authenticator did not verify you (UV: PIN or biometric)";
  return null;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Verifies the assertion's signature with the credential's P-256 SPKI (WebCrypto). */
export async function verifyAssertion(spki: Uint8Array<ArrayBuffer>, sig: WebauthnUserSig): Promise<boolean> {
  const authData = b64urlDecode(sig.authenticator_data);
  const clientData = b64urlDecode(sig.client_data_json);
  const der = b64urlDecode(sig.signature);
  if (!authData || !clientData || !der) return false;
  const raw = der.length === 64 ? der : derToRawSignature(der);
  if (!raw) return false;
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } catch {
    return false;
  }
  const signed = new Uint8Array(authData.length + 32);
  signed.set(authData);
  signed.set(await sha256(clientData), authData.length);
  return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, raw, signed);
}

// --- ECDSA signatures: ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }` ↔ raw r‖s (64 bytes) ---

/** The 64-byte r‖s of a DER ECDSA P-256 signature; null when it is not one. */
export function derToRawSignature(der: Uint8Array): Uint8Array<ArrayBuffer> | null {
  let i = 0;
  if (der[i++] !== 0x30) return null;
  const len = der[i++];
  if (len === undefined || len & 0x80 || len !== der.length - 2) return null;
  const out = new Uint8Array(64);
  for (let part = 0; part < 2; part++) {
    if (der[i++] !== 0x02) return null;
    const n = der[i++];
    if (n === undefined || n === 0 || n > 33 || i + n > der.length) return null;
    let v = der.subarray(i, i + n);
    i += n;
    if (v[0]! & 0x80) return null; // negative: not a valid r or s
    if (v.length > 1 && v[0] === 0 && !(v[1]! & 0x80)) return null; // not minimal
    if (v[0] === 0) v = v.subarray(1);
    if (v.length > 32) return null;
    out.set(v, part * 32 + (32 - v.length));
  }
  return i === der.length ? out : null;
}

/** The DER form of a raw 64-byte r‖s signature (what authenticators send). */
export function rawToDerSignature(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  if (raw.length !== 64) throw new RangeError("a raw P-256 signature is 64 bytes");
  const int = (v: Uint8Array) => {
    let s = 0;
    while (s < v.length - 1 && v[s] === 0) s++;
    const t = v.subarray(s);
    return t[0]! & 0x80 ? [0x02, t.length + 1, 0, ...t] : [0x02, t.length, ...t];
  };
  const body = [...int(raw.subarray(0, 32)), ...int(raw.subarray(32))];
  return new Uint8Array([0x30, body.length, ...body]);
}

// --- P-256 public keys: SubjectPublicKeyInfo DER (what a PC pins) ---

/** SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 … }. */
const P256_SPKI_PREFIX = new Uint8Array([
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
  0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
]);

/** The SPKI DER of an uncompressed P-256 point (x, y: 32 bytes each). */
export function p256Spki(x: Uint8Array, y: Uint8Array): Uint8Array<ArrayBuffer> {
  if (x.length !== 32 || y.length !== 32) throw new RangeError("P-256 coordinates are 32 bytes");
  const out = new Uint8Array(91);
  out.set(P256_SPKI_PREFIX);
  out.set(x, 27);
  out.set(y, 59);
  return out;
}

/** The uncompressed point (0x04 ‖ x ‖ y) of a P-256 SPKI; null for any other key or encoding. */
export function p256PointFromSpki(spki: Uint8Array): Uint8Array<ArrayBuffer> | null {
  if (spki.length !== 91 || !equal(spki.subarray(0, P256_SPKI_PREFIX.length), P256_SPKI_PREFIX)) return null;
  return new Uint8Array(spki.subarray(26));
}

// --- CBOR (RFC 8949), just what an attestation object and a COSE key need ---

type Cbor = number | bigint | string | boolean | null | undefined | Uint8Array | Cbor[] | Map<Cbor, Cbor>;

/** Decodes one CBOR item at `at`; answers it and where it ends. Throws on anything odd. */
export function decodeCbor(b: Uint8Array, at = 0, depth = 0): { value: Cbor; end: number } {
  if (depth > 16) throw new Error("CBOR nested too deep");
  const need = (n: number) => {
    if (at + n > b.length) throw new Error("CBOR truncated");
  };
  need(1);
  const ib = b[at++]!;
  const major = ib >> 5;
  const info = ib & 31;
  let arg: number;
  if (info < 24) arg = info;
  else if (info === 24) {
    need(1);
    arg = b[at++]!;
  } else if (info === 25) {
    need(2);
    arg = (b[at]! << 8) | b[at + 1]!;
    at += 2;
  } else if (info === 26) {
    need(4);
    arg = ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
    at += 4;
  } else throw new Error("CBOR: 64-bit or indefinite lengths are not expected here");
  switch (major) {
    case 0:
      return { value: arg, end: at };
    case 1:
      return { value: -1 - arg, end: at };
    case 2:
      need(arg);
      return { value: b.slice(at, at + arg), end: at + arg };
    case 3:
      need(arg);
      return { value: new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(at, at + arg)), end: at + arg };
    case 4: {
      const out: Cbor[] = [];
      for (let i = 0; i < arg; i++) {
        const r = decodeCbor(b, at, depth + 1);
        out.push(r.value);
        at = r.end;
      }
      return { value: out, end: at };
    }
    case 5: {
      const out = new Map<Cbor, Cbor>();
      for (let i = 0; i < arg; i++) {
        const k = decodeCbor(b, at, depth + 1);
        const v = decodeCbor(b, k.end, depth + 1);
        out.set(k.value, v.value);
        at = v.end;
      }
      return { value: out, end: at };
    }
    case 7:
      if (info === 20) return { value: false, end: at };
      if (info === 21) return { value: true, end: at };
      if (info === 22) return { value: null, end: at };
      throw new Error("CBOR: unexpected simple value");
    default:
      throw new Error("CBOR: tags are not expected here");
  }
}

/** The SPKI DER of a COSE_Key that is an ES256 P-256 key (kty 2, alg −7, crv 1); else null. */
export function spkiFromCose(key: Map<Cbor, Cbor>): Uint8Array<ArrayBuffer> | null {
  const x = key.get(-2);
  const y = key.get(-3);
  if (key.get(1) !== 2 || key.get(3) !== COSE_ES256 || key.get(-1) !== 1) return null;
  if (!(x instanceof Uint8Array) || !(y instanceof Uint8Array) || x.length !== 32 || y.length !== 32) return null;
  return p256Spki(x, y);
}

/** The credential id and P-256 SPKI in an attestation object's authenticator data. */
export function credentialFromAttestation(
  attestationObject: Uint8Array,
): { credentialId: Uint8Array<ArrayBuffer>; spki: Uint8Array<ArrayBuffer> | null } {
  const att = decodeCbor(attestationObject).value;
  const authData = att instanceof Map ? att.get("authData") : null;
  if (!(authData instanceof Uint8Array)) throw new Error("the attestation object has no authData");
  return credentialFromAuthData(authData);
}

/** Parses attested credential data (WebAuthn §6.5.1) out of authenticator data. */
export function credentialFromAuthData(
  authData: Uint8Array,
): { credentialId: Uint8Array<ArrayBuffer>; spki: Uint8Array<ArrayBuffer> | null } {
  if (authData.length < 37 || !(authData[32]! & FLAG_AT)) throw new Error("no attested credential data");
  let at = 37 + 16; // rpIdHash, flags, counter, AAGUID
  if (authData.length < at + 2) throw new Error("attested credential data truncated");
  const n = (authData[at]! << 8) | authData[at + 1]!;
  at += 2;
  if (authData.length < at + n) throw new Error("credential id truncated");
  const credentialId = new Uint8Array(authData.subarray(at, at + n));
  const key = decodeCbor(authData, at + n).value;
  return { credentialId, spki: key instanceof Map ? spkiFromCose(key) : null };
}

// --- The server's ceremony JSON (webauthn-rs) ↔ the browser's WebAuthn objects ---

type Json = Record<string, unknown>;

function bin(v: unknown, what: string): Uint8Array<ArrayBuffer> {
  const b = typeof v === "string" ? b64urlDecode(v) : null;
  if (!b) throw new Error(`the server's WebAuthn options have no valid ${what}`);
  return b;
}

const descriptors = (list: unknown, what: string) =>
  Array.isArray(list)
    ? list.map((d: Json) => ({ ...d, type: "public-key", id: bin(d.id, what) }) as PublicKeyCredentialDescriptor)
    : undefined;

/**
 * `navigator.credentials.create()` options from `/api/passkeys/register/start`. Only ES256
 * is offered: a PC pins P-256 keys only, so an RSA passkey could log in but never sign.
 */
export function creationOptions(json: { publicKey: Json }): CredentialCreationOptions {
  const pk = json.publicKey;
  const user = pk.user as Json;
  const params = ((pk.pubKeyCredParams as Json[] | undefined) ?? []).filter((p) => p.alg === COSE_ES256);
  const exclude = descriptors(pk.excludeCredentials, "excludeCredentials id");
  return {
    publicKey: {
      ...(pk as unknown as PublicKeyCredentialCreationOptions),
      challenge: bin(pk.challenge, "challenge"),
      user: { ...(user as unknown as PublicKeyCredentialUserEntity), id: bin(user.id, "user id") },
      pubKeyCredParams: params.length ? (params as unknown as PublicKeyCredentialParameters[]) : [{ type: "public-key", alg: COSE_ES256 }],
      ...(exclude ? { excludeCredentials: exclude } : {}),
    },
  };
}

/** `navigator.credentials.get()` options from `/api/passkeys/login/start`. */
export function requestOptions(json: { publicKey: Json }): CredentialRequestOptions {
  const pk = json.publicKey;
  const allow = descriptors(pk.allowCredentials, "allowCredentials id");
  return {
    publicKey: {
      ...(pk as unknown as PublicKeyCredentialRequestOptions),
      challenge: bin(pk.challenge, "challenge"),
      ...(allow ? { allowCredentials: allow } : {}),
    },
  };
}

/** A created credential as `/api/passkeys/register/finish` takes it. */
export function registrationJson(c: {
  id: string;
  rawId: ArrayBuffer;
  type: string;
  response: { clientDataJSON: ArrayBuffer; attestationObject: ArrayBuffer };
}): Json {
  return {
    id: c.id,
    rawId: b64urlEncode(bytes(c.rawId)),
    type: c.type,
    response: {
      clientDataJSON: b64urlEncode(bytes(c.response.clientDataJSON)),
      attestationObject: b64urlEncode(bytes(c.response.attestationObject)),
    },
    extensions: {},
  };
}

/** An assertion as `/api/passkeys/login/finish` takes it. */
export function assertionJson(c: {
  id: string;
  rawId: ArrayBuffer;
  type: string;
  response: { clientDataJSON: ArrayBuffer; authenticatorData: ArrayBuffer; signature: ArrayBuffer; userHandle: ArrayBuffer | null };
}): Json {
  const r = c.response;
  return {
    id: c.id,
    rawId: b64urlEncode(bytes(c.rawId)),
    type: c.type,
    response: {
      clientDataJSON: b64urlEncode(bytes(r.clientDataJSON)),
      authenticatorData: b64urlEncode(bytes(r.authenticatorData)),
      signature: b64urlEncode(bytes(r.signature)),
      userHandle: r.userHandle ? b64urlEncode(bytes(r.userHandle)) : null,
    },
    extensions: {},
  };
}
