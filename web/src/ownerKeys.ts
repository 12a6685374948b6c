// Owner keys and the statements that change them (docs/protocol.md sections 6.5, 6.12 and
// 6.13): what `POST /api/me/keys` takes to pin a passkey on the owner's PCs. Pure.

import { b64urlEncode } from "./b64";
import { canonicalBytes } from "./canonical";
import { MAX_CREDENTIAL_ID, p256PointFromSpki } from "./webauthn";

export const OWNER_KEYS_STATEMENT_TYPE = "tether.owner_keys.v1";

/** A key a PC pins (`role` absent: owner). */
export interface OwnerKey {
  kid: string;
  kind: "ed25519" | "webauthn-es256" | string;
  public_key: string;
  role?: "owner" | "approver";
}

/** `GET /api/me/keys`: the account's registered keys and the statements that made them. */
export interface KeysView {
  keys: OwnerKey[];
  statements: {
    version: number;
    signed_by: string;
    device_id?: string;
    added: string[];
    removed: string[];
    not_after: number;
    created_at: number;
  }[];
  version: number;
  pushed_to?: number;
}

export interface OwnerKeysStatement {
  type: typeof OWNER_KEYS_STATEMENT_TYPE;
  user_id: string;
  device_id?: string;
  version: number;
  add: OwnerKey[];
  remove: string[];
  not_after: number;
}

/**
 * How long a pinning statement stays good: a PC that is offline longer never applies it
 * (PCs paired later pin the account's keys at pairing and need no statement). The server
 * takes at most 400 days.
 */
export const STATEMENT_LIFETIME_MS = 365 * 24 * 3600 * 1000;

/** The owner key of a passkey: its credential id (b64url) as kid, its P-256 SPKI DER as key. */
export function passkeyOwnerKey(credentialId: Uint8Array, spki: Uint8Array): OwnerKey {
  if (credentialId.length < 1 || credentialId.length > MAX_CREDENTIAL_ID) {
    throw new Error(
      `This passkey's credential id is ${credentialId.length} bytes; your PCs pin at most ${MAX_CREDENTIAL_ID}. Use another authenticator.`,
    );
  }
  if (!p256PointFromSpki(spki)) {
    throw new Error("This passkey's key is not a P-256 (ES256) key, the only kind your PCs pin. Use another authenticator.");
  }
  return { kid: b64urlEncode(credentialId), kind: "webauthn-es256", public_key: b64urlEncode(spki) };
}

/**
 * A statement adding `add` (and removing `remove`) on every PC of the owner. `version`
 * must be above the account's last one: the clock in ms, or last + 1 if the clock is
 * behind.
 */
export function ownerKeysStatement(s: {
  userId: string;
  lastVersion: number;
  now: number;
  add?: OwnerKey[];
  remove?: string[];
  deviceId?: string;
}): OwnerKeysStatement {
  const add = s.add ?? [];
  const remove = s.remove ?? [];
  if (!add.length && !remove.length) throw new TypeError("a statement adds or removes at least one key");
  return {
    type: OWNER_KEYS_STATEMENT_TYPE,
    user_id: s.userId,
    ...(s.deviceId ? { device_id: s.deviceId } : {}),
    version: Math.max(s.now, s.lastVersion + 1),
    add,
    remove,
    not_after: s.now + STATEMENT_LIFETIME_MS,
  };
}

/** What is signed: the statement's canonical bytes (RFC 8785), as the server rebuilds them. */
export function statementBytes(s: OwnerKeysStatement): Uint8Array<ArrayBuffer> {
  // A key's `role` is left out when it is `owner`, as the server serializes it.
  const add = s.add.map(({ role, ...k }) => (role && role !== "owner" ? { ...k, role } : k));
  return canonicalBytes({ ...s, add });
}

/** The passkeys among the keys that may sign commands and statements (the owner role). */
export function passkeysOf(keys: OwnerKey[]): OwnerKey[] {
  return keys.filter((k) => k.kind === "webauthn-es256" && (k.role ?? "owner") === "owner");
}
