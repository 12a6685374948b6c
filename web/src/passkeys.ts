// The owner's passkeys in this app: enrol one (the server's registration ceremony, then
// pin it on the owner's PCs with an owner-keys statement), sign statements with it, log
// in with it, and re-authenticate with it (the app lock, step-up).
//
// Where a passkey counts:
// - the **server** knows the passkeys registered with `/api/passkeys/register/*`: they log
//   in (and count as a fresh second factor);
// - the **PCs** know the keys pinned on them: the account's registration key and every
//   owner-keys statement (`POST /api/me/keys`). A passkey signs commands only once a
//   statement signed by a key the PCs pin already (this browser's Ed25519 key) adds it.
//   PCs online get the statement at once, those offline when they connect, and PCs paired
//   later pin it at pairing (the server pins the account's registered keys then).
//
// The account's keys (`GET /api/me/keys`) are cached in memory and in localStorage (public
// keys only), so a command can be signed offline (the offline queue) and the lock knows
// whether there is a passkey before the network answers.

import { api, type User } from "./api";
import { b64urlDecode } from "./b64";
import { ApiError } from "./errors";
import { findOwnerKey } from "./ownerKey";
import { type KeysView, type OwnerKey, ownerKeysStatement, passkeyOwnerKey, passkeysOf, statementBytes } from "./ownerKeys";
import { signEd25519, type Ed25519UserSig } from "./statement";
import {
  assertionJson,
  checkAssertion,
  credentialFromAttestation,
  creationOptions,
  registrationJson,
  requestOptions,
  userSigFromAssertion,
  verifyAssertion,
  type WebauthnUserSig,
} from "./webauthn";

export type UserSig = Ed25519UserSig | WebauthnUserSig;

/** Whether this browser can use passkeys at all. */
export function passkeysSupported(): boolean {
  return typeof window !== "undefined" && "PublicKeyCredential" in window && !!navigator.credentials;
}

/** The relying party: this origin and host, which a PC checks against the server it paired with. */
function rp() {
  return { origin: location.origin, rpId: location.hostname };
}

// --- The account's keys, cached ---

const KEYS_KEY = (uid: string) => `tether.keys.${uid}`;
const LOCAL_KEY = (uid: string) => `tether.passkeys.${uid}`;
/** "passkey" (default when one is pinned) or "browser-key": what signs commands. */
export const SIGNER_KEY = "tether.signer";

let cache: { uid: string; view: KeysView } | null = null;
const listeners = new Set<() => void>();

/** Calls `f` whenever the cached keys change. */
export function onKeysChange(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

function remember(uid: string, view: KeysView) {
  cache = { uid, view };
  try {
    localStorage.setItem(KEYS_KEY(uid), JSON.stringify(view));
  } catch {
    // storage full or disabled: the memory copy serves this page
  }
  for (const l of listeners) l();
}

/** The account's keys as last seen (memory, else localStorage); null if never. */
export function cachedKeys(uid: string | undefined = api.currentUser?.id): KeysView | null {
  if (!uid) return null;
  if (cache?.uid === uid) return cache.view;
  try {
    const v = JSON.parse(localStorage.getItem(KEYS_KEY(uid)) ?? "null") as KeysView | null;
    if (v && Array.isArray(v.keys)) {
      cache = { uid, view: v };
      return v;
    }
  } catch {
    // unreadable: as if never seen
  }
  return null;
}

/** Reads the account's keys from the server (and caches them). */
export async function refreshKeys(): Promise<KeysView> {
  const uid = api.currentUser?.id;
  const view = await api.ownerKeys();
  if (uid) remember(uid, view);
  return view;
}

/** The passkeys pinned for the signed-in user (from the cache; refresh first to be sure). */
export function pinnedPasskeys(uid: string | undefined = api.currentUser?.id): OwnerKey[] {
  return passkeysOf(cachedKeys(uid)?.keys ?? []);
}

// --- Passkeys made in this browser (public data only) ---

export interface LocalPasskey {
  /** Credential id, unpadded base64url (the kid a PC pins). */
  id: string;
  /** P-256 SubjectPublicKeyInfo DER, unpadded base64url. */
  spki: string;
  created: number;
  /** Whether the owner-keys statement pinning it was accepted. */
  pinned: boolean;
}

export function localPasskeys(uid: string | undefined = api.currentUser?.id): LocalPasskey[] {
  if (!uid) return [];
  try {
    const v = JSON.parse(localStorage.getItem(LOCAL_KEY(uid)) ?? "[]") as unknown;
    return Array.isArray(v) ? (v as LocalPasskey[]) : [];
  } catch {
    return [];
  }
}

function saveLocal(uid: string, list: LocalPasskey[]) {
  localStorage.setItem(LOCAL_KEY(uid), JSON.stringify(list));
  for (const l of listeners) l();
}

// --- Enrolment ---

export class PasskeyError extends Error {
  override name = "PasskeyError";
  constructor(
    message: string,
    readonly title = "Passkey",
    readonly hint = "Try again; your authenticator must verify you (PIN or biometric).",
  ) {
    super(message);
  }
}

/** A WebAuthn DOMException as something a person can act on. */
function webauthnFailure(e: unknown, doing: string): Error {
  if (e instanceof DOMException) {
    if (e.name === "NotAllowedError") {
      return new PasskeyError(`${doing} was cancelled or timed out.`, "Cancelled", "Try again and confirm on your authenticator.");
    }
    if (e.name === "InvalidStateError") {
      return new PasskeyError("This authenticator already holds a passkey for your account.", "Already enrolled", "Use it, or add a passkey on another authenticator.");
    }
    if (e.name === "SecurityError") {
      return new PasskeyError(
        `${doing} was refused by the browser for this address (${location.host}).`,
        "Not allowed here",
        "Open the app at the server's own address (its public URL, with a trusted certificate).",
      );
    }
    return new PasskeyError(`${doing} failed: ${e.message}`);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Enrols a passkey: registers it with the server (it logs in from now on), then pins it on
 * the owner's PCs. Answers the new passkey; `pinned` is false when pinning failed (retry
 * with `pinPasskey`).
 */
export async function enrolPasskey(): Promise<{ passkey: LocalPasskey; pinError?: unknown }> {
  const user = requireUser();
  if (!passkeysSupported()) throw new PasskeyError("This browser has no WebAuthn (passkeys).", "No passkeys here");
  const start = await api.passkeyRegisterStart();
  let cred: PublicKeyCredential;
  try {
    const c = await navigator.credentials.create(creationOptions(start.options));
    if (!c) throw new PasskeyError("The browser made no passkey.");
    cred = c as PublicKeyCredential;
  } catch (e) {
    throw webauthnFailure(e, "Creating the passkey");
  }
  const response = cred.response as AuthenticatorAttestationResponse;
  const spki = spkiOf(response);
  // Before the server stores it: a passkey a PC could never pin is no use for commands.
  const key = passkeyOwnerKey(new Uint8Array(cred.rawId), spki);
  await api.passkeyRegisterFinish(start.ceremony_id, registrationJson({ id: cred.id, rawId: cred.rawId, type: cred.type, response }));
  const passkey: LocalPasskey = { id: key.kid, spki: key.public_key, created: Date.now(), pinned: false };
  saveLocal(user.id, [...localPasskeys(user.id).filter((p) => p.id !== passkey.id), passkey]);
  try {
    await pinPasskey(passkey);
    return { passkey: { ...passkey, pinned: true } };
  } catch (pinError) {
    return { passkey, pinError };
  }
}

/** The credential's P-256 SPKI: `getPublicKey()`, else parsed out of the attestation object. */
function spkiOf(r: AuthenticatorAttestationResponse): Uint8Array<ArrayBuffer> {
  const direct = typeof r.getPublicKey === "function" ? r.getPublicKey() : null;
  if (direct) return new Uint8Array(direct);
  const { spki } = credentialFromAttestation(new Uint8Array(r.attestationObject));
  if (!spki) throw new PasskeyError("This passkey's key is not ES256 (P-256), the only kind your PCs pin.");
  return spki;
}

/**
 * Pins a passkey on every PC of the owner: an owner-keys statement adding it, signed by a
 * key the PCs pin already (this browser's Ed25519 key, else a pinned passkey).
 */
export async function pinPasskey(p: LocalPasskey): Promise<KeysView> {
  const user = requireUser();
  const spki = b64urlDecode(p.spki);
  const id = b64urlDecode(p.id);
  if (!spki || !id) throw new Error("stored passkey is unreadable");
  const current = await refreshKeys();
  const statement = ownerKeysStatement({
    userId: user.id,
    lastVersion: current.version,
    now: Date.now(),
    add: [passkeyOwnerKey(id, spki)],
  });
  const userSig = await signStatement(statementBytes(statement), "browser-key");
  const view = await api.submitOwnerKeys({ statement, user_sig: userSig });
  remember(user.id, view);
  saveLocal(
    user.id,
    localPasskeys(user.id).map((q) => (q.id === p.id ? { ...q, pinned: true } : q)),
  );
  return view;
}

// --- Signing ---

export class NoSigningKeyError extends Error {
  override name = "NoSigningKeyError";
  readonly title = "No signing key here";
  readonly hint =
    "Send it from the browser you registered with, or add a passkey there (Security) and use it here.";
  constructor() {
    super("This browser holds neither your signing key nor access to a passkey pinned on your PCs.");
  }
}

/** Which signer a statement gets: a pinned passkey unless the user chose this browser's key. */
export function preferredSigner(): "passkey" | "browser-key" {
  try {
    return localStorage.getItem(SIGNER_KEY) === "browser-key" ? "browser-key" : "passkey";
  } catch {
    return "passkey";
  }
}

/**
 * Signs statement bytes with the owner's key: a pinned passkey (a WebAuthn assertion with
 * the statement's hash as challenge) when `prefer` is "passkey" and there is one, else
 * this browser's Ed25519 key, else a pinned passkey after all.
 */
export async function signStatement(
  statement: Uint8Array<ArrayBuffer>,
  prefer: "passkey" | "browser-key" = preferredSigner(),
): Promise<UserSig> {
  const user = requireUser();
  const passkeys = passkeysSupported() ? pinnedPasskeys(user.id) : [];
  if (prefer === "passkey" && passkeys.length) return assertStatement(statement, passkeys);
  const key = user.mobile_pub ? await findOwnerKey(user.mobile_pub) : null;
  if (key) return signEd25519(key.privateKey, key.raw, statement);
  if (passkeys.length) return assertStatement(statement, passkeys);
  throw new NoSigningKeyError();
}

/**
 * A WebAuthn assertion over a statement: challenge = SHA-256(statement), one of `keys`
 * (this browser's own first), user verification required, this host as RP id. Checked as
 * the PC will check it before it is sent.
 */
export async function assertStatement(statement: Uint8Array<ArrayBuffer>, keys: OwnerKey[]): Promise<WebauthnUserSig> {
  const challenge = new Uint8Array(await crypto.subtle.digest("SHA-256", statement));
  const sig = await getAssertion(challenge, keys, "Signing with your passkey");
  const problem = await checkAssertion(statement, sig, rp());
  if (problem) throw new PasskeyError(`Your PCs would refuse this signature: ${problem}.`, "Passkey signature unusable");
  return sig;
}

async function getAssertion(challenge: Uint8Array<ArrayBuffer>, keys: OwnerKey[], doing: string): Promise<WebauthnUserSig> {
  const mine = new Set(localPasskeys().map((p) => p.id));
  const ordered = [...keys.filter((k) => mine.has(k.kid)), ...keys.filter((k) => !mine.has(k.kid))];
  const allowCredentials: PublicKeyCredentialDescriptor[] = [];
  for (const k of ordered) {
    const id = b64urlDecode(k.kid);
    if (id) allowCredentials.push({ type: "public-key", id });
  }
  let cred: PublicKeyCredential;
  try {
    const c = await navigator.credentials.get({
      publicKey: { challenge, allowCredentials, userVerification: "required", rpId: location.hostname, timeout: 120_000 },
    });
    if (!c) throw new PasskeyError("The browser gave no passkey.");
    cred = c as PublicKeyCredential;
  } catch (e) {
    throw webauthnFailure(e, doing);
  }
  const r = cred.response as AuthenticatorAssertionResponse;
  return userSigFromAssertion({
    rawId: cred.rawId,
    authenticatorData: r.authenticatorData,
    clientDataJSON: r.clientDataJSON,
    signature: r.signature,
  });
}

// --- Logging in and re-authenticating ---

/** Logs in with a passkey registered for `email` (the server's login ceremony). */
export async function loginWithPasskey(email: string, replace = false): Promise<User> {
  if (!passkeysSupported()) throw new PasskeyError("This browser has no WebAuthn (passkeys).", "No passkeys here");
  const start = await api.passkeyLoginStart(email);
  let cred: PublicKeyCredential;
  try {
    const c = await navigator.credentials.get(requestOptions(start.options));
    if (!c) throw new PasskeyError("The browser gave no passkey.");
    cred = c as PublicKeyCredential;
  } catch (e) {
    throw webauthnFailure(e, "Signing in with your passkey");
  }
  const r = cred.response as AuthenticatorAssertionResponse;
  return api.passkeyLoginFinish(
    start.ceremony_id,
    assertionJson({ id: cred.id, rawId: cred.rawId, type: cred.type, response: r }),
    replace,
  );
}

/**
 * Proves again, with the passkey, that the signed-in user is here: the server's passkey
 * login for the same account, which opens a fresh session (with a fresh second factor,
 * what step-up wants) and ends the old one. Where the server cannot answer (offline) or
 * has no login passkey for the account, `localOk` allows the local check instead (the
 * app lock only): an assertion with UV over a random challenge, verified here with a
 * pinned passkey's public key. It gates the UI; it proves nothing to the server.
 */
export async function reauthenticate(localOk = false): Promise<"server" | "local"> {
  const user = requireUser();
  try {
    const again = await loginWithPasskey(user.email, true);
    if (again.id !== user.id) throw new PasskeyError("That passkey belongs to another account.");
    return "server";
  } catch (e) {
    // The server cannot check (offline), or has no passkey of this account to check
    // (3008: a passkey pinned on the PCs but never registered for login, e.g. by the CLI).
    const fallback = e instanceof ApiError && (e.status === 0 || e.code === 3008);
    if (!localOk || !fallback) throw e;
  }
  await localCheck(user.id);
  return "local";
}

/** The app lock's offline check: a UV assertion by a pinned passkey over a fresh random challenge. */
async function localCheck(uid: string): Promise<void> {
  const keys = pinnedPasskeys(uid);
  if (!keys.length) throw new PasskeyError("No passkey is pinned for this account.");
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const challenge = new Uint8Array(await crypto.subtle.digest("SHA-256", nonce));
  const sig = await getAssertion(challenge, keys, "Unlocking");
  const key = keys.find((k) => k.kid === sig.kid);
  const spki = key && b64urlDecode(key.public_key);
  const problem = spki ? await checkAssertion(nonce, sig, rp()) : "not one of your passkeys";
  if (problem || !spki || !(await verifyAssertion(spki, sig))) {
    throw new PasskeyError(`That passkey did not unlock the app${problem ? `: ${problem}` : ""}.`);
  }
}

function requireUser(): User {
  const u = api.currentUser;
  if (!u) throw new ApiError(401, 3001, "UNAUTHENTICATED", "Sign in first.");
  return u;
}
