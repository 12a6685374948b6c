// The server's stable error codes (crates/proto/src/error.rs, docs/protocol.md) mapped to
// what a person should do about them. The server's own `message` says what went wrong;
// the hint here says what to do next.

/** The body of every HTTP error: `{code, error, message, trace_id?, rule?}`. */
export interface ErrorBody {
  code: number;
  error: string;
  message: string;
  trace_id?: string;
  rule?: string;
}

/** A failed call, as the screens show it. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    /** HTTP status (0: the request never reached the server). */
    readonly status: number,
    /** Stable code (0: none, e.g. a network failure or a non-JSON answer). */
    readonly code: number,
    /** Stable name, e.g. `SECOND_FACTOR_REQUIRED`. */
    readonly error: string,
    message: string,
    readonly traceId?: string,
    readonly rule?: string,
  ) {
    super(message);
  }

  /** Whether the user must sign in again (the session is gone, not just the access token). */
  get needsLogin(): boolean {
    return [3001, 3003, 3007].includes(this.code) || (this.code === 3002 && this.status === 401);
  }
}

/** Actionable advice by code. Codes without an entry fall back to their category. */
const HINTS: Record<number, string> = {
  1001: "The app sent something the server could not read. Reload the page and try again.",
  1005: "A field was refused (the message names it). Correct it and try again.",
  1007: "Too many attempts. Wait a minute, then try again.",
  2001: "The signature did not verify. Sign in again on this browser and retry.",
  2004: "It expired before it arrived. Send it again.",
  2011: "This browser's key is not pinned on the PC. Use the browser or CLI you registered with, or add this browser's key with `tether keys add`.",
  3001: "Sign in to continue.",
  3002: "Your session expired. Sign in again.",
  3003: "Your session is no longer valid. Sign in again.",
  3004: "Your account may not do this. Ask an admin if you need it.",
  3005: "Enter the 6-digit code from your authenticator app.",
  3006: "That code is wrong or was already used. Wait for the next code and try again.",
  3007: "Your session was ended for safety (a sign-in token was reused). Sign in again.",
  3008: "Check your email and password.",
  4001: "Policy does not allow this. Ask an admin to change the policy if it should.",
  4002: "It waits for approval by another authorised user.",
  4003: "Confirm with your second factor, then send it again.",
  5001: "The PC is offline; it runs the command when it reconnects (until it expires).",
  5002: "The PC has too many commands waiting. Try again in a little while.",
  5003: "The PC did not take the command after every retry. Check that its agent is running.",
  5004: "The PC is not paired (or not yours). Pair it again.",
  5005: "The PC was revoked. Pair it again to use it.",
  5006: "The pairing code expired. Ask the PC for a new QR code.",
  5007: "That pairing code was already used. Ask the PC for a new QR code.",
  5008: "That request id was already used for something else. Send it again.",
  6001: "The PC could not do it. Check the PC, then retry.",
  6002: "The PC's helper service is not running. Start it on the PC, then retry.",
  6005: "The PC took too long. Check the PC, then retry.",
  9001: "Something failed on the server. Try again; if it persists, give an admin the trace id.",
  9002: "The server cannot reach one of its services. Try again shortly.",
  9003: "It does not exist, or you cannot see it. Go back and refresh.",
  9004: "Something changed meanwhile. Refresh and try again.",
};

const CATEGORY_HINTS: Record<number, string> = {
  1: "The request was not accepted as sent. Check your input and try again.",
  2: "A security check failed. Sign in again and retry.",
  3: "Sign in again, or ask an admin for access.",
  4: "Policy stopped this. Ask an admin if it should be allowed.",
  5: "The PC could not be reached as expected. Check that it is online and paired.",
  6: "The PC could not carry it out. Check the PC and retry.",
  7: "The file transfer failed. Try again.",
  9: "The server had a problem. Try again shortly.",
};

/** What to do about an error code. */
export function hintFor(code: number): string {
  return HINTS[code] ?? CATEGORY_HINTS[Math.floor(code / 1000)] ?? "Try again.";
}

function isErrorBody(v: unknown): v is ErrorBody {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.code === "number" && typeof o.error === "string" && typeof o.message === "string";
}

/** Builds the ApiError of an HTTP answer from its status and (maybe JSON) body text. */
export function errorFromResponse(status: number, bodyText: string): ApiError {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(bodyText);
  } catch {
    // not JSON: a proxy's page, say
  }
  if (isErrorBody(parsed)) {
    return new ApiError(status, parsed.code, parsed.error, parsed.message, parsed.trace_id, parsed.rule);
  }
  const msg =
    status >= 500
      ? `The server answered ${status} without details.`
      : `Unexpected answer from the server (HTTP ${status}).`;
  return new ApiError(status, 0, "HTTP_" + status, msg);
}

/** The ApiError of a request that never got an answer. */
export function networkError(cause: unknown): ApiError {
  const why = cause instanceof Error && cause.message ? ` (${cause.message})` : "";
  return new ApiError(0, 0, "NETWORK", `Could not reach the server${why}.`);
}

/** What a screen shows for an error: a title, the server's message and what to do. */
export interface Described {
  title: string;
  message: string;
  hint: string;
  detail?: string;
}

/** An error of the app's own that says what to call it and what to do (QueueFullError, …). */
export interface Explained {
  title: string;
  hint: string;
}

function isExplained(e: unknown): e is Error & Explained {
  const x = e as Partial<Explained> | null;
  return e instanceof Error && typeof x?.title === "string" && typeof x?.hint === "string";
}

/**
 * What a screen shows for an error. `hints` replaces the hint of some codes where the
 * screen knows better (the pair screen's 5006, say).
 */
export function describeError(e: unknown, hints: Record<number, string> = {}): Described {
  if (isExplained(e)) return { title: e.title, message: e.message, hint: e.hint };
  if (e instanceof ApiError) {
    const title = e.code ? `${e.error} (${e.code})` : e.error === "NETWORK" ? "Offline?" : e.error;
    const hint =
      hints[e.code] ??
      (e.code === 0
        ? e.error === "NETWORK"
          ? "Check your connection, then try again."
          : "Try again; if it persists, tell an admin."
        : hintFor(e.code));
    const bits = [e.rule ? `rule ${e.rule}` : "", e.traceId ? `trace ${e.traceId}` : ""].filter(Boolean);
    return { title, message: e.message, hint, ...(bits.length ? { detail: bits.join(" · ") } : {}) };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { title: "Something went wrong", message, hint: "Try again; if it persists, reload the page." };
}
