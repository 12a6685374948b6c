// One live stream for the whole page: the screens and pieces that follow live events
// (the device list, a device page, the alert banners, the offline queue) share a single
// `/api/live` connection instead of opening one each. It opens with the first subscriber
// and closes a little after the last one leaves, so moving from the list to a device
// page keeps it.

import { api } from "./api";
import { followLive, type LiveEvent, type LiveHandler, type LiveState } from "./live";

interface Sub {
  onEvent: LiveHandler;
  onState?: ((s: LiveState) => void) | undefined;
}

const subs = new Set<Sub>();
let conn: { stop: () => void } | null = null;
let state: LiveState = "connecting";
let closing: ReturnType<typeof setTimeout> | null = null;

/** How long the stream stays open with no subscriber (a screen change). */
const LINGER_MS = 3000;

function dispatch(e: LiveEvent) {
  for (const s of [...subs]) {
    try {
      s.onEvent(e);
    } catch (err) {
      console.warn("live event handler failed", err);
    }
  }
}

function setState(s: LiveState) {
  state = s;
  for (const x of [...subs]) x.onState?.(s);
}

/** Follows every live event of the user's devices until the returned function is called. */
export function subscribeLive(onEvent: LiveHandler, onState?: (s: LiveState) => void): () => void {
  const sub: Sub = { onEvent, onState };
  subs.add(sub);
  if (closing) {
    clearTimeout(closing);
    closing = null;
  }
  if (!conn) conn = followLive([], dispatch, setState);
  onState?.(state);
  return () => {
    subs.delete(sub);
    if (subs.size || closing) return;
    closing = setTimeout(() => {
      closing = null;
      if (subs.size) return;
      conn?.stop();
      conn = null;
      state = "connecting";
    }, LINGER_MS);
  };
}

// Another user (or none): the open stream is the previous session's. Start over.
let lastUser: string | null = api.currentUser?.id ?? null;
api.onSession((u) => {
  const id = u?.id ?? null;
  if (id === lastUser) return;
  lastUser = id;
  conn?.stop();
  conn = null;
  state = "connecting";
  if (id && subs.size) conn = followLive([], dispatch, setState);
});

/** Closes the stream now (sign-out). */
export function closeLive(): void {
  if (closing) clearTimeout(closing);
  closing = null;
  conn?.stop();
  conn = null;
  state = "connecting";
}
