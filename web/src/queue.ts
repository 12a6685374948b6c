// The offline command queue, as pure logic: the clock, the transport, the storage and
// "are we online" are injected, so the unit tests drive it without a browser or a server
// (queue.test.ts); outbox.ts binds it to the page (localStorage, online/offline events,
// the API).
//
// A command the owner asks for while the phone is offline is signed at once (the key is
// in this browser) and kept here, at most MAX_PENDING of them. When the network is back
// they are submitted one at a time, oldest first: the next one only once the one before
// it was accepted or refused, so they reach the PC in the order they were asked for. A
// network failure retries the same command after 1 s, 2 s, 4 s, … (capped); the server
// dedupes by `message_id`, so a retry of a request that did arrive is harmless. A
// command whose signed deadline (`not_after`) passes before it could be sent is dropped
// with a message: the PC would refuse it anyway.

import { ApiError } from "./errors";
import { isTerminal } from "./format";

/** The most commands that may wait at once. */
export const MAX_PENDING = 3;
/** First retry delay after a network failure, doubled each time up to BACKOFF_CAP_MS. */
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 30_000;
/** Finished entries (sent, refused, dropped) kept for the person to see. */
export const KEEP_FINISHED = 10;

/** What the queue needs of a signed `POST /api/command` body. */
export interface QueuedBody {
  message_id: string;
  device_id: string;
  method: string;
  not_after: number;
  [k: string]: unknown;
}

/** A command's server-side view, as far as the queue follows it. */
export interface QueuedView {
  command_id: string;
  state: string;
  [k: string]: unknown;
}

/**
 * - `waiting`: signed, not sent yet (offline);
 * - `sending`: a request is in flight;
 * - `retrying`: the last attempt failed on the network; the next one is at `nextAttemptAt`;
 * - `sent`: the server accepted it (`view` follows its state on the PC);
 * - `failed`: the server refused it (`error`);
 * - `expired`: its deadline passed before it could be sent: dropped.
 */
export type EntryState = "waiting" | "sending" | "retrying" | "sent" | "failed" | "expired";

/** An error as stored (ApiError is not serialisable as such). */
export interface StoredError {
  status: number;
  code: number;
  error: string;
  message: string;
  traceId?: string;
}

export interface Entry {
  id: string; // = body.message_id, the command id
  userId: string;
  deviceId: string;
  deviceName: string;
  method: string;
  label: string;
  body: QueuedBody;
  notAfter: number;
  queuedAt: number;
  state: EntryState;
  /** Attempts so far (each request sent). */
  attempts: number;
  /** Network failures in a row (the backoff exponent). */
  failures: number;
  nextAttemptAt?: number;
  error?: StoredError;
  view?: QueuedView;
  finishedAt?: number;
  note?: string;
}

export interface Transport {
  submit(body: QueuedBody): Promise<QueuedView>;
}

export interface Clock {
  now(): number;
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(h: unknown): void;
}

export interface Storage {
  load(): Entry[];
  save(entries: Entry[]): void;
}

export interface QueueOptions {
  transport: Transport;
  clock: Clock;
  storage: Storage;
  isOnline: () => boolean;
  /** The signed-in user: only their entries are sent (and counted). */
  currentUser: () => string | null;
  max?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

export class QueueFullError extends Error {
  override name = "QueueFullError";
  readonly title = "Queue full";
  readonly hint = "Nothing was signed or sent. The queue holds 3 commands while the phone is offline.";
  constructor(readonly max: number) {
    super(
      `${max} commands are already waiting; wait until they are sent when the phone is back online, or remove one from the queue, then try again.`,
    );
  }
}

export const PENDING: readonly EntryState[] = ["waiting", "sending", "retrying"];
export const isPending = (e: Entry): boolean => PENDING.includes(e.state);

/** The delay before retry number `failures` (1-based): 1 s, 2 s, 4 s, … capped. */
export function backoffDelay(failures: number, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS): number {
  const n = Math.max(1, failures);
  return Math.min(cap, base * 2 ** Math.min(n - 1, 30));
}

/** Whether a failed submit is worth trying again later (the network, a busy server, a lapsed session). */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof ApiError)) return false;
  if (e.status === 0 && e.error === "NETWORK") return true;
  if (e.needsLogin) return true; // sent once the user signs in again
  return [502, 503, 504].includes(e.status) || [1007, 5002, 9002].includes(e.code);
}

function storedError(e: unknown): StoredError {
  if (e instanceof ApiError) {
    return {
      status: e.status,
      code: e.code,
      error: e.error,
      message: e.message,
      ...(e.traceId ? { traceId: e.traceId } : {}),
    };
  }
  return { status: 0, code: 0, error: "ERROR", message: e instanceof Error ? e.message : String(e) };
}

/** The ApiError of a stored error, for the error box. */
export function errorOf(s: StoredError): ApiError {
  return new ApiError(s.status, s.code, s.error, s.message, s.traceId);
}

export const EXPIRED_NOTE =
  "Its signed deadline passed before the phone was back online, so it was not sent (the PC would refuse it). Send it again if you still need it.";

export class CommandQueue {
  private list: Entry[];
  private listeners = new Set<() => void>();
  private timer: unknown = null;
  private running = false;
  private rerun = false;
  private readonly max: number;
  private readonly base: number;
  private readonly cap: number;

  constructor(private readonly o: QueueOptions) {
    this.max = o.max ?? MAX_PENDING;
    this.base = o.backoffBaseMs ?? BACKOFF_BASE_MS;
    this.cap = o.backoffCapMs ?? BACKOFF_CAP_MS;
    let loaded: Entry[] = [];
    try {
      loaded = o.storage.load();
    } catch {
      loaded = [];
    }
    // A request in flight when the page went away may or may not have arrived: send it
    // again (the server answers the same command for the same message_id).
    this.list = loaded.map((e) => (e.state === "sending" ? { ...e, state: "waiting" } : e));
    this.expire();
  }

  /** Reads the storage again (another tab changed it), keeping what this tab has in flight. */
  reload(): void {
    let loaded: Entry[];
    try {
      loaded = this.o.storage.load();
    } catch {
      return;
    }
    const mine = new Map(this.list.filter((e) => e.state === "sending").map((e) => [e.id, e]));
    this.list = loaded.map((e) => mine.get(e.id) ?? e);
    for (const l of this.listeners) l();
    void this.flush();
  }

  /** Every entry, oldest first (all users'; screens filter with `forUser`). */
  entries(): readonly Entry[] {
    return this.list;
  }

  forUser(user: string | null): Entry[] {
    return this.list.filter((e) => e.userId === user);
  }

  pendingCount(user: string | null = this.o.currentUser()): number {
    return this.list.filter((e) => e.userId === user && isPending(e)).length;
  }

  /** Whether a new command must be queued rather than sent (offline, or others wait ahead of it). */
  shouldQueue(): boolean {
    return !this.o.isOnline() || this.pendingCount() > 0;
  }

  /** Throws QueueFullError when no more commands may wait. */
  checkRoom(): void {
    if (this.pendingCount() >= this.max) throw new QueueFullError(this.max);
  }

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /** Adds a signed command; throws QueueFullError when `max` already wait. */
  enqueue(body: QueuedBody, meta: { deviceName: string; label: string }): Entry {
    const user = this.o.currentUser();
    if (!user) throw new Error("Sign in first.");
    this.checkRoom();
    if (this.list.some((e) => e.id === body.message_id)) throw new Error("This command is queued already.");
    const entry: Entry = {
      id: body.message_id,
      userId: user,
      deviceId: body.device_id,
      deviceName: meta.deviceName,
      method: body.method,
      label: meta.label,
      body,
      notAfter: body.not_after,
      queuedAt: this.o.clock.now(),
      state: "waiting",
      attempts: 0,
      failures: 0,
    };
    this.list = [...this.list, entry];
    this.changed();
    void this.flush();
    return entry;
  }

  /** Removes an entry: a pending one is not sent (unless its request is in flight). */
  remove(id: string): boolean {
    const e = this.list.find((x) => x.id === id);
    if (!e || e.state === "sending") return false;
    this.list = this.list.filter((x) => x.id !== id);
    this.changed();
    void this.flush();
    return true;
  }

  /** Drops the finished entries of the current user. */
  clearFinished(): void {
    const user = this.o.currentUser();
    this.list = this.list.filter((e) => e.userId !== user || isPending(e));
    this.changed();
  }

  /** The command's later state, from the live view or a poll. */
  update(id: string, view: Partial<QueuedView>): void {
    const e = this.list.find((x) => x.id === id);
    if (!e || e.state !== "sent" || !e.view) return;
    if (isTerminal(e.view.state)) return;
    this.patch(id, { view: { ...e.view, ...view } as QueuedView });
  }

  /** The network is back: send now, the backoff starts over. */
  online(): void {
    if (this.list.some((e) => e.state === "retrying")) {
      this.list = this.list.map((e) => {
        if (e.state !== "retrying") return e;
        const { nextAttemptAt: _n, ...rest } = e;
        return { ...rest, failures: 0 };
      });
      this.changed();
    }
    void this.flush();
  }

  /** Sends what waits, oldest first, until everything went or something must wait. */
  async flush(): Promise<void> {
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.rerun = false;
        await this.drain();
      } while (this.rerun);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async drain(): Promise<void> {
    for (;;) {
      this.expire();
      const user = this.o.currentUser();
      const head = this.list.find((e) => e.userId === user && isPending(e));
      if (!head || !this.o.isOnline()) return;
      if (head.state === "retrying" && head.nextAttemptAt !== undefined && this.o.clock.now() < head.nextAttemptAt) {
        return; // schedule() wakes us
      }
      this.patch(head.id, { state: "sending", attempts: head.attempts + 1 });
      let view: QueuedView;
      try {
        view = await this.o.transport.submit(head.body);
      } catch (e) {
        if (!this.list.some((x) => x.id === head.id)) continue;
        if (e instanceof ApiError && e.code === 2004) {
          this.finish(head.id, "expired", { error: storedError(e), note: EXPIRED_NOTE });
        } else if (isRetryable(e)) {
          const failures = head.failures + 1;
          const delay = backoffDelay(failures, this.base, this.cap);
          this.patch(head.id, {
            state: "retrying",
            failures,
            nextAttemptAt: this.o.clock.now() + delay,
            error: storedError(e),
          });
          return;
        } else {
          this.finish(head.id, "failed", { error: storedError(e) });
        }
        continue;
      }
      this.finish(head.id, "sent", { view });
    }
  }

  /** Drops pending entries whose deadline passed (not one in flight). */
  private expire(): void {
    const now = this.o.clock.now();
    let any = false;
    this.list = this.list.map((e) => {
      if ((e.state === "waiting" || e.state === "retrying") && now >= e.notAfter) {
        any = true;
        const { nextAttemptAt: _n, ...rest } = e;
        return { ...rest, state: "expired" as const, finishedAt: now, note: EXPIRED_NOTE };
      }
      return e;
    });
    if (any) {
      this.prune();
      this.changed();
    }
  }

  private finish(id: string, state: EntryState, extra: Partial<Entry>): void {
    const e = this.list.find((x) => x.id === id);
    const { nextAttemptAt: _n, error: _e, ...rest } = e ?? ({} as Entry);
    this.list = this.list.map((x) =>
      x.id === id ? { ...rest, ...extra, state, finishedAt: this.o.clock.now() } : x,
    ) as Entry[];
    this.prune();
    this.changed();
  }

  private patch(id: string, p: Partial<Entry>): void {
    this.list = this.list.map((x) => (x.id === id ? { ...x, ...p } : x));
    this.changed();
  }

  private prune(): void {
    const finished = this.list.filter((e) => !isPending(e));
    if (finished.length <= KEEP_FINISHED) return;
    const drop = new Set(
      [...finished].sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0)).slice(0, finished.length - KEEP_FINISHED).map((e) => e.id),
    );
    this.list = this.list.filter((e) => !drop.has(e.id));
  }

  /** One timer: the next retry, or the next deadline of something waiting. */
  private schedule(): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    const times: number[] = [];
    for (const e of this.list) {
      if (e.state === "waiting" || e.state === "retrying") times.push(e.notAfter);
      if (e.state === "retrying" && e.nextAttemptAt !== undefined) times.push(e.nextAttemptAt);
    }
    if (!times.length) return;
    const at = Math.min(...times);
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, Math.max(0, at - this.o.clock.now()));
  }

  private changed(): void {
    try {
      this.o.storage.save(this.list);
    } catch {
      // storage full or disabled: the queue still works for this page
    }
    for (const l of this.listeners) l();
  }
}
