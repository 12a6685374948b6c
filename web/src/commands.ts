// Builds and signs a command in the browser (docs/protocol.md sections 6.9 and 6.11).
//
// `signCommand` makes the signed body (the offline queue signs at queue time and submits
// later), `submit` sends it, `sendSigned` does both. The signer is the owner's passkey
// when one is pinned on their PCs (a WebAuthn assertion, `webauthn-es256`), else this
// browser's Ed25519 owner key (passkeys.ts `signStatement`). A sensitive command the
// server answers `4003 STEP_UP_REQUIRED` asks the user for a fresh second factor (the
// step-up prompt, screens/StepUp.tsx) and is sent again.

import { api, type CommandView } from "./api";
import { ApiError } from "./errors";
import { NoSigningKeyError, signStatement, type UserSig } from "./passkeys";
import { commandStatement } from "./statement";

/** How long a command may wait for an offline PC, and how long its signature lasts. */
export const COMMAND_TTL_S = 300;

/** Thrown when this browser can sign with nothing the PCs pin. */
export { NoSigningKeyError as NoOwnerKeyError };

/** The signed body of `POST /api/command` (docs/protocol.md section 6.9). */
export interface SignedCommand {
  device_id: string;
  method: string;
  params: Record<string, unknown>;
  ttl_seconds: number;
  message_id: string;
  user_sig: UserSig;
  not_after: number;
}

/**
 * Signs `method` for `deviceId` with the signed-in owner's key and returns the request
 * body, ready to submit now or later (until `not_after`). Works offline: the Ed25519 key
 * is in IndexedDB, a passkey is on the authenticator and the pinned keys are cached.
 */
export async function signCommand(
  deviceId: string,
  method: string,
  params: Record<string, unknown> = {},
  now: number = Date.now(),
): Promise<SignedCommand> {
  const messageId = crypto.randomUUID();
  const notAfter = now + COMMAND_TTL_S * 1000;
  const statement = commandStatement({ commandId: messageId, deviceId, method, params, notAfter });
  const userSig = await signStatement(statement);
  return {
    device_id: deviceId,
    method,
    params,
    ttl_seconds: COMMAND_TTL_S,
    message_id: messageId,
    user_sig: userSig,
    not_after: notAfter,
  };
}

/**
 * Asks the user for a fresh second factor; resolves true once the server has one for this
 * session (false: the user gave up). Set by the step-up prompt while the app is mounted.
 */
export type StepUpHandler = (e: ApiError) => Promise<boolean>;
let stepUpHandler: StepUpHandler | null = null;

export function setStepUpHandler(h: StepUpHandler | null): void {
  stepUpHandler = h;
}

/**
 * Submits a signed body (idempotent by its `message_id`: sending it again is safe). When
 * the server wants a fresh second factor first (`4003`) and `stepUp` is on, the user is
 * asked for it and the same body is sent once more.
 */
export async function submit(body: SignedCommand, opts: { stepUp?: boolean } = {}): Promise<CommandView> {
  const send = () => api.submitCommand(body as unknown as Record<string, unknown>);
  try {
    return await send();
  } catch (e) {
    if (e instanceof ApiError && e.code === 4003 && opts.stepUp !== false && stepUpHandler && (await stepUpHandler(e))) {
      return send();
    }
    throw e;
  }
}

/** Signs and submits `method` for `deviceId` with the owner key of the signed-in user. */
export async function sendSigned(
  deviceId: string,
  method: string,
  params: Record<string, unknown> = {},
  now: number = Date.now(),
): Promise<CommandView> {
  return submit(await signCommand(deviceId, method, params, now));
}
