// The offline queue (queue.ts) bound to this page: kept in localStorage (it survives a
// reload), sent when the browser says it is online again or the user signs in, and each
// sent command followed to its final state (live events, and a poll for what the live
// stream missed while it was down). `sendOrQueue` is what the command buttons call.

import { useEffect, useState } from "preact/hooks";
import { api, type CommandView } from "./api";
import { signCommand, submit, type SignedCommand } from "./commands";
import { ApiError } from "./errors";
import { isTerminal } from "./format";
import { subscribeLive } from "./liveHub";
import { CommandQueue, type Entry, type QueuedView } from "./queue";

const KEY = "tether.outbox.v1";
const POLL_MS = 2500;

function load(): Entry[] {
  const v = JSON.parse(localStorage.getItem(KEY) ?? "[]") as unknown;
  return Array.isArray(v) ? (v as Entry[]) : [];
}

export const outbox = new CommandQueue({
  // Sent in the background when the network is back: no step-up prompt out of the blue (a
  // `4003` ends the entry refused, with the hint to confirm and send it again).
  transport: { submit: (b) => submit(b as unknown as SignedCommand, { stepUp: false }) as unknown as Promise<QueuedView> },
  clock: {
    now: () => Date.now(),
    setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  },
  storage: { load, save: (e) => localStorage.setItem(KEY, JSON.stringify(e)) },
  isOnline: () => navigator.onLine,
  currentUser: () => api.currentUser?.id ?? null,
});

addEventListener("online", () => outbox.online());
api.onSession((u) => {
  if (u) void outbox.flush();
});
// Another tab of the app changed the queue: take its version, so neither tab writes
// over the other's entries. (Two tabs may then both send a waiting command; the server
// answers the second with the same command, by its message_id.)
addEventListener("storage", (e) => {
  if (e.key === KEY) outbox.reload();
});

/** Follows the state of sent commands that are not final yet. */
let polling: ReturnType<typeof setInterval> | null = null;
function tracking(): Entry[] {
  const user = api.currentUser?.id ?? null;
  return outbox.forUser(user).filter((e) => e.state === "sent" && e.view && !isTerminal(e.view.state));
}
function poll() {
  if (!navigator.onLine) return;
  for (const e of tracking()) {
    api.command(e.id).then(
      (v) => outbox.update(e.id, v as unknown as QueuedView),
      () => undefined,
    );
  }
}
function syncPolling() {
  const need = tracking().length > 0;
  if (need && !polling) polling = setInterval(poll, POLL_MS);
  if (!need && polling) {
    clearInterval(polling);
    polling = null;
  }
}
outbox.subscribe(syncPolling);

/** The current user's entries, re-rendering on every change (and following live states). */
export function useOutbox(): Entry[] {
  const user = api.currentUser?.id ?? null;
  const [entries, setEntries] = useState<Entry[]>(() => outbox.forUser(user));
  useEffect(() => {
    const refresh = () => setEntries(outbox.forUser(api.currentUser?.id ?? null));
    refresh();
    const off = outbox.subscribe(refresh);
    const offLive = subscribeLive((e) => {
      if (e.kind === "command_status" && typeof e.data.command_id === "string") {
        outbox.update(e.data.command_id, e.data as unknown as QueuedView);
      }
    });
    syncPolling();
    return () => {
      off();
      offLive();
    };
  }, [user]);
  return entries;
}

/** Whether the browser says it is online, re-rendering when that changes. */
export function useOnline(): boolean {
  const [on, setOn] = useState(navigator.onLine);
  useEffect(() => {
    const f = () => setOn(navigator.onLine);
    addEventListener("online", f);
    addEventListener("offline", f);
    return () => {
      removeEventListener("online", f);
      removeEventListener("offline", f);
    };
  }, []);
  return on;
}

export type Dispatched = { kind: "sent"; view: CommandView } | { kind: "queued"; entry: Entry };

/**
 * Signs a command and submits it, or keeps it in the queue when the phone is offline
 * (or others wait ahead of it, or the request fails on the network). Throws
 * QueueFullError when the queue is full — before signing anything.
 */
export async function sendOrQueue(
  deviceId: string,
  deviceName: string,
  method: string,
  label: string,
  params: Record<string, unknown> = {},
): Promise<Dispatched> {
  if (outbox.shouldQueue()) outbox.checkRoom();
  const body = await signCommand(deviceId, method, params);
  const meta = { deviceName, label };
  if (outbox.shouldQueue()) return { kind: "queued", entry: outbox.enqueue(body as unknown as Entry["body"], meta) };
  try {
    return { kind: "sent", view: await submit(body) };
  } catch (e) {
    if (e instanceof ApiError && e.status === 0 && e.error === "NETWORK") {
      // The same signed body, sent again later: the server dedupes by message_id.
      return { kind: "queued", entry: outbox.enqueue(body as unknown as Entry["body"], meta) };
    }
    throw e;
  }
}
