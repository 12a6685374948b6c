// The pair token of a pairing link. The agent's QR code holds
// `https://<server>/pair#token=<token>`; the server answers `/pair` with this app. The
// token is taken out of the address at once (so it is not left in the history or shown
// in the address bar) and kept in sessionStorage until the user, signed in, confirms —
// through a sign-in or registration in between.

const KEY = "tether.pairToken";

/** The token in a pairing link or its fragment (`…#token=…`, `token=…`), or a bare token. */
export function tokenFrom(input: string): string | null {
  const s = input.trim();
  if (!s) return null;
  const m = /[#?&]token=([^&#\s]+)/.exec(s) ?? /^token=([^&#\s]+)/.exec(s);
  const t = m?.[1] ? decodeURIComponent(m[1]) : /^[A-Za-z0-9_-]{16,4096}$/.test(s) ? s : null;
  return t && t.length >= 16 && t.length <= 4096 ? t : null;
}

/**
 * At start-up: if the page was opened with a pair token in its fragment, keep the token
 * and rewrite the address to the app's pair screen. Returns whether it did.
 */
export function capturePairLink(loc: Pick<Location, "hash" | "pathname">, history: Pick<History, "replaceState">): boolean {
  if (!/^#token=/.test(loc.hash)) return false;
  const t = tokenFrom(loc.hash);
  if (!t) return false;
  setPendingToken(t);
  history.replaceState(null, "", "/#/pair");
  return true;
}

export function pendingToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setPendingToken(t: string | null): void {
  try {
    if (t) sessionStorage.setItem(KEY, t);
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the token lasts as long as the page
  }
}

/** The result of `POST /api/pair/confirm`. */
export interface Paired {
  device_id: string;
  device_name: string;
  status: string; // active | awaiting_approval
  pairing_code: string;
}
