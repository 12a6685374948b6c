// Builds and signs a command in the browser (docs/protocol.md sections 6.9 and 6.11).

import { api, type CommandView } from "./api";
import { findOwnerKey } from "./ownerKey";
import { commandStatement, signEd25519 } from "./statement";

/** How long a command may wait for an offline PC, and how long its signature lasts. */
export const COMMAND_TTL_S = 300;

export class NoOwnerKeyError extends Error {
  override name = "NoOwnerKeyError";
  constructor() {
    super(
      "This browser does not hold your signing key (it was created in another browser or by the CLI). Send commands from there, or add this browser's key to your PCs.",
    );
  }
}

/** Signs and submits `method` for `deviceId` with the owner key of the signed-in user. */
export async function sendSigned(
  deviceId: string,
  method: string,
  params: Record<string, unknown> = {},
  now: number = Date.now(),
): Promise<CommandView> {
  const pub = api.currentUser?.mobile_pub;
  const key = pub ? await findOwnerKey(pub) : null;
  if (!key) throw new NoOwnerKeyError();
  const messageId = crypto.randomUUID();
  const notAfter = now + COMMAND_TTL_S * 1000;
  const statement = commandStatement({ commandId: messageId, deviceId, method, params, notAfter });
  const userSig = await signEd25519(key.privateKey, key.raw, statement);
  return api.submitCommand({
    device_id: deviceId,
    method,
    params,
    ttl_seconds: COMMAND_TTL_S,
    message_id: messageId,
    user_sig: userSig,
    not_after: notAfter,
  });
}
