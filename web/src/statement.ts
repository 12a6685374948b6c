// The owner's command statement and Ed25519 signature (docs/protocol.md section 6.11;
// crates/proto/src/owner_sig.rs): what the PC verifies before it runs anything.

import { b64urlEncode, hex } from "./b64";
import { canonicalBytes } from "./canonical";

export const COMMAND_STATEMENT_TYPE = "tether.command.v1";

export interface CommandStatementInput {
  commandId: string;
  deviceId: string;
  method: string;
  params: Record<string, unknown>;
  notAfter: number;
}

/** The canonical bytes of the `tether.command.v1` statement. */
export function commandStatement(s: CommandStatementInput): Uint8Array<ArrayBuffer> {
  if (s.params === null || typeof s.params !== "object" || Array.isArray(s.params)) {
    throw new TypeError("params must be a JSON object");
  }
  if (!Number.isSafeInteger(s.notAfter) || s.notAfter < 0) {
    throw new TypeError("notAfter must be UnixMillis");
  }
  return canonicalBytes({
    type: COMMAND_STATEMENT_TYPE,
    command_id: s.commandId,
    device_id: s.deviceId,
    method: s.method,
    params: s.params,
    not_after: s.notAfter,
  });
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** `KeyId::for_ed25519`: the first 8 bytes of SHA-256 of the raw public key, hex. */
export async function kidForEd25519(rawPublicKey: Uint8Array<ArrayBuffer>): Promise<string> {
  return hex((await sha256(rawPublicKey)).subarray(0, 8));
}

/** The WebAuthn challenge of a statement: b64url(SHA-256(statement)). */
export async function webauthnChallenge(statement: Uint8Array<ArrayBuffer>): Promise<string> {
  return b64urlEncode(await sha256(statement));
}

export interface Ed25519UserSig {
  kind: "ed25519";
  kid: string;
  sig: string;
}

/** Signs a statement with an Ed25519 CryptoKey (no prefix: the statement's `type` separates uses). */
export async function signEd25519(
  privateKey: CryptoKey,
  rawPublicKey: Uint8Array<ArrayBuffer>,
  statement: Uint8Array<ArrayBuffer>,
): Promise<Ed25519UserSig> {
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, statement));
  return { kind: "ed25519", kid: await kidForEd25519(rawPublicKey), sig: b64urlEncode(sig) };
}
