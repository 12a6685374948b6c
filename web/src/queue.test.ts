import { describe, expect, it } from "vitest";
import { ApiError } from "./errors";
import {
  backoffDelay,
  CommandQueue,
  type Entry,
  EXPIRED_NOTE,
  isRetryable,
  QueueFullError,
  type QueuedBody,
  type QueuedView,
} from "./queue";

/** A clock whose timers run only when the test advances time. */
class FakeClock {
  t = 1_000_000;
  private timers: { at: number; f: () => void; id: number }[] = [];
  private next = 1;
  now = () => this.t;
  setTimeout = (f: () => void, ms: number) => {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, f, id });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.timers = this.timers.filter((x) => x.id !== h);
  };
  /** Moves time on, firing due timers in order (and letting their promises settle). */
  async advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const due = this.timers[0];
      if (!due || due.at > end) break;
      this.timers.shift();
      this.t = due.at;
      due.f();
      await settle();
    }
    this.t = end;
    await settle();
  }
  pending() {
    return this.timers.map((x) => x.at - this.t);
  }
}

const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

type Answer = QueuedView | ApiError;

/** A transport that records what it sent and answers from a script (default: accepted). */
class FakeTransport {
  sent: { id: string; at: number }[] = [];
  script: Answer[] = [];
  constructor(private clock: FakeClock) {}
  submit = async (body: QueuedBody): Promise<QueuedView> => {
    this.sent.push({ id: body.message_id, at: this.clock.now() });
    const a = this.script.shift() ?? { command_id: body.message_id, state: "queued" };
    if (a instanceof ApiError) throw a;
    return { ...a, command_id: body.message_id };
  };
}

const network = () => new ApiError(0, 0, "NETWORK", "Could not reach the server (Failed to fetch).");

function setup(opts: { online?: boolean; stored?: Entry[]; user?: string | null } = {}) {
  const clock = new FakeClock();
  const transport = new FakeTransport(clock);
  let saved: Entry[] = opts.stored ?? [];
  const state = { online: opts.online ?? false, user: opts.user === undefined ? "usr_1" : opts.user };
  const q = new CommandQueue({
    transport,
    clock,
    storage: { load: () => structuredClone(saved), save: (e) => (saved = structuredClone(e)) },
    isOnline: () => state.online,
    currentUser: () => state.user,
  });
  return { clock, transport, q, state, saved: () => saved };
}

let n = 0;
function body(clockNow: number, method = "lock_screen", ttlMs = 300_000): QueuedBody {
  n++;
  return {
    message_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
    device_id: "dev_1",
    method,
    params: {},
    ttl_seconds: 300,
    not_after: clockNow + ttlMs,
    user_sig: { kind: "ed25519", kid: "k", sig: "s" },
  };
}

const meta = { deviceName: "lab-pc-1", label: "Lock screen" };

describe("backoff", () => {
  it("doubles from 1 s and is capped", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((f) => backoffDelay(f))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(backoffDelay(100)).toBe(30000);
    expect(backoffDelay(3, 500, 1500)).toBe(1500);
  });
  it("retries the network, a busy server and a lapsed session; not a refusal", () => {
    expect(isRetryable(network())).toBe(true);
    expect(isRetryable(new ApiError(503, 9002, "UNAVAILABLE", "x"))).toBe(true);
    expect(isRetryable(new ApiError(503, 5002, "DEVICE_QUEUE_FULL", "x"))).toBe(true);
    expect(isRetryable(new ApiError(401, 3002, "TOKEN_EXPIRED", "x"))).toBe(true);
    expect(isRetryable(new ApiError(403, 4001, "POLICY_DENIED", "x"))).toBe(false);
    expect(isRetryable(new ApiError(403, 2011, "OWNER_SIGNATURE_INVALID", "x"))).toBe(false);
    expect(isRetryable(new Error("x"))).toBe(false);
  });
});

describe("the offline queue", () => {
  it("keeps commands while offline and refuses a fourth with a clear message", async () => {
    const { q, clock, transport, saved } = setup();
    for (let i = 0; i < 3; i++) q.enqueue(body(clock.now()), meta);
    await settle();
    expect(transport.sent).toEqual([]);
    expect(q.pendingCount()).toBe(3);
    expect(q.entries().map((e) => e.state)).toEqual(["waiting", "waiting", "waiting"]);
    expect(() => q.enqueue(body(clock.now()), meta)).toThrow(QueueFullError);
    expect(() => q.checkRoom()).toThrow(/^3 commands are already waiting; /);
    expect(saved()).toHaveLength(3);
    expect(q.shouldQueue()).toBe(true);
  });

  it("sends them in order when the network is back, and frees the room", async () => {
    const { q, clock, transport, state } = setup();
    const ids = [0, 1, 2].map(() => q.enqueue(body(clock.now()), meta).id);
    state.online = true;
    q.online();
    await settle();
    expect(transport.sent.map((s) => s.id)).toEqual(ids);
    expect(q.entries().map((e) => e.state)).toEqual(["sent", "sent", "sent"]);
    expect(q.entries().map((e) => e.view?.state)).toEqual(["queued", "queued", "queued"]);
    expect(q.pendingCount()).toBe(0);
    expect(q.shouldQueue()).toBe(false);
    // The room is free again: finished entries do not count.
    q.enqueue(body(clock.now()), meta);
    await settle();
    expect(transport.sent).toHaveLength(4);
  });

  it("survives a reload (the storage), resending one that was in flight", async () => {
    const first = setup();
    const a = first.q.enqueue(body(first.clock.now()), meta);
    const b = first.q.enqueue(body(first.clock.now()), meta);
    const stored = first.saved().map((e) => (e.id === a.id ? { ...e, state: "sending" as const } : e));
    const again = setup({ stored, online: true });
    expect(again.q.entries().map((e) => [e.id, e.state])).toEqual([
      [a.id, "waiting"],
      [b.id, "waiting"],
    ]);
    await again.q.flush();
    expect(again.transport.sent.map((s) => s.id)).toEqual([a.id, b.id]);
  });

  it("retries a network failure after 1 s, 2 s, 4 s, keeping the order", async () => {
    const { q, clock, transport, state } = setup();
    const a = q.enqueue(body(clock.now()), meta);
    const b = q.enqueue(body(clock.now()), meta);
    transport.script = [network(), network(), network()];
    state.online = true;
    q.online();
    await settle();
    const t0 = clock.now();
    expect(transport.sent.map((s) => s.id)).toEqual([a.id]);
    expect(q.entries()[0]?.state).toBe("retrying");
    expect(q.entries()[0]?.nextAttemptAt).toBe(t0 + 1000);
    expect(q.entries()[1]?.state).toBe("waiting"); // b waits behind a
    await clock.advance(999);
    expect(transport.sent).toHaveLength(1);
    await clock.advance(1);
    expect(transport.sent.map((s) => s.at - t0)).toEqual([0, 1000]);
    await clock.advance(2000);
    expect(transport.sent.map((s) => s.at - t0)).toEqual([0, 1000, 3000]);
    await clock.advance(4000); // the fourth attempt succeeds, then b goes at once
    expect(transport.sent.map((s) => [s.id, s.at - t0])).toEqual([
      [a.id, 0],
      [a.id, 1000],
      [a.id, 3000],
      [a.id, 7000],
      [b.id, 7000],
    ]);
    expect(q.entries().map((e) => e.state)).toEqual(["sent", "sent"]);
    expect(q.entries()[0]?.attempts).toBe(4);
    expect(q.entries()[0]?.error).toBeUndefined();
  });

  it("caps the backoff and starts over when the browser says it is online again", async () => {
    const { q, clock, transport, state } = setup({ online: true });
    transport.script = Array.from({ length: 8 }, network);
    q.enqueue(body(clock.now(), "lock_screen", 3_600_000), meta);
    await settle();
    for (const d of [1000, 2000, 4000, 8000, 16000, 30000]) await clock.advance(d);
    expect(q.entries()[0]?.failures).toBe(7);
    expect(clock.pending()).toContain(30000);
    state.online = true;
    q.online();
    await settle();
    expect(q.entries()[0]?.failures).toBe(1); // the 8th failure, right away
    expect(q.entries()[0]?.nextAttemptAt).toBe(clock.now() + 1000);
    await clock.advance(1000);
    expect(q.entries()[0]?.state).toBe("sent");
  });

  it("drops a command whose signed deadline passed, with a message, and sends the rest", async () => {
    const { q, clock, transport, state } = setup();
    const short = q.enqueue(body(clock.now(), "reboot", 10_000), meta);
    const long = q.enqueue(body(clock.now(), "lock_screen", 300_000), meta);
    await clock.advance(10_000); // its deadline timer fires while offline
    expect(q.entries().find((e) => e.id === short.id)?.state).toBe("expired");
    expect(q.entries().find((e) => e.id === short.id)?.note).toBe(EXPIRED_NOTE);
    expect(q.pendingCount()).toBe(1);
    state.online = true;
    q.online();
    await settle();
    expect(transport.sent.map((s) => s.id)).toEqual([long.id]);
  });

  it("marks a command the server says expired (2004) as dropped", async () => {
    const { q, clock, transport } = setup({ online: true });
    transport.script = [new ApiError(410, 2004, "EXPIRED", "not_after is in the past")];
    const e = q.enqueue(body(clock.now()), meta);
    await settle();
    expect(q.entries().find((x) => x.id === e.id)?.state).toBe("expired");
  });

  it("records a refusal and goes on with the next one", async () => {
    const { q, clock, transport, state } = setup();
    const a = q.enqueue(body(clock.now()), meta);
    const b = q.enqueue(body(clock.now()), meta);
    transport.script = [new ApiError(403, 4001, "POLICY_DENIED", "no", "trace-1")];
    state.online = true;
    q.online();
    await settle();
    expect(q.entries().map((e) => [e.id, e.state])).toEqual([
      [a.id, "failed"],
      [b.id, "sent"],
    ]);
    expect(q.entries()[0]?.error).toEqual({ status: 403, code: 4001, error: "POLICY_DENIED", message: "no", traceId: "trace-1" });
  });

  it("follows a sent command's state until it is final", async () => {
    const { q, clock, state } = setup();
    const e = q.enqueue(body(clock.now()), meta);
    state.online = true;
    q.online();
    await settle();
    q.update(e.id, { state: "executing" });
    q.update(e.id, { state: "completed" });
    q.update(e.id, { state: "sent" }); // a late, older event changes nothing
    expect(q.entries()[0]?.view?.state).toBe("completed");
  });

  it("removes a waiting command (it is never sent) and keeps only the user's own", async () => {
    const { q, clock, transport, state } = setup();
    const a = q.enqueue(body(clock.now()), meta);
    const b = q.enqueue(body(clock.now()), meta);
    expect(q.remove(a.id)).toBe(true);
    state.user = "usr_2";
    expect(q.pendingCount()).toBe(0);
    expect(q.forUser("usr_2")).toEqual([]);
    state.online = true;
    q.online();
    await settle();
    expect(transport.sent).toEqual([]); // usr_1's command waits for usr_1
    state.user = "usr_1";
    await q.flush();
    expect(transport.sent.map((s) => s.id)).toEqual([b.id]);
  });

  it("notifies subscribers and refuses when nobody is signed in", () => {
    const { q, clock, state } = setup();
    let calls = 0;
    const off = q.subscribe(() => calls++);
    q.enqueue(body(clock.now()), meta);
    expect(calls).toBeGreaterThan(0);
    off();
    state.user = null;
    expect(() => q.enqueue(body(clock.now()), meta)).toThrow(/Sign in/);
  });
});
