import { describe, expect, it } from "vitest";
import { DEFAULT_IDLE_S, IdleLock, idleMsFrom, type LockState } from "./lock";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function memory(initial: LockState | null = null) {
  let s = initial;
  return { load: () => s, save: (v: LockState) => (s = v), get: () => s };
}

const MIN = 60_000;

describe("the idle setting", () => {
  it("defaults to 5 minutes; 0 turns the lock off; nonsense is the default", () => {
    expect(DEFAULT_IDLE_S).toBe(300);
    expect(idleMsFrom(null)).toBe(5 * MIN);
    expect(idleMsFrom("")).toBe(5 * MIN);
    expect(idleMsFrom("0")).toBe(0);
    expect(idleMsFrom("2")).toBe(2000);
    expect(idleMsFrom("0.2")).toBe(1000);
    expect(idleMsFrom("abc")).toBe(5 * MIN);
    expect(idleMsFrom("-5")).toBe(5 * MIN);
    expect(idleMsFrom("1e9")).toBe(24 * 3600 * 1000);
  });
});

describe("the idle lock", () => {
  it("locks after the idle time without activity, not before", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => 5 * MIN);
    c.advance(5 * MIN - 1);
    expect(l.check()).toBe(false);
    expect(l.remaining()).toBe(1);
    c.advance(1);
    expect(l.check()).toBe(true);
    expect(l.locked).toBe(true);
  });

  it("starts the idle time again on activity", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => 5 * MIN);
    c.advance(4 * MIN);
    l.touch();
    c.advance(4 * MIN);
    expect(l.check()).toBe(false);
    c.advance(MIN);
    expect(l.check()).toBe(true);
  });

  it("stays locked through activity until unlocked; unlocking starts the time again", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => MIN);
    c.advance(MIN);
    expect(l.check()).toBe(true);
    l.touch();
    expect(l.check()).toBe(true);
    c.advance(10 * MIN);
    l.unlock();
    expect(l.check()).toBe(false);
    c.advance(MIN - 1);
    expect(l.check()).toBe(false);
  });

  it("locks a tab that comes back after being hidden that long (no events while hidden)", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => 5 * MIN);
    l.touch(); // the last thing before the tab was hidden
    c.advance(6 * MIN); // hidden: no ticks ran (background timers may not), no activity
    expect(l.check()).toBe(true); // the visibilitychange check
  });

  it("does not lock a tab hidden for less", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => 5 * MIN);
    c.advance(2 * MIN);
    expect(l.check()).toBe(false);
  });

  it("applies a changed setting at once, and never locks when off", () => {
    const c = clock();
    let idle = 5 * MIN;
    const l = new IdleLock(c.now, () => idle);
    c.advance(2 * MIN);
    expect(l.check()).toBe(false);
    idle = MIN;
    expect(l.check()).toBe(true);
    l.unlock();
    idle = 0;
    c.advance(1000 * MIN);
    expect(l.check()).toBe(false);
    expect(l.remaining()).toBe(Infinity);
  });

  it("keeps its state over a reload: locked stays locked, a stale tab locks", () => {
    const c = clock();
    const store = memory();
    const l = new IdleLock(c.now, () => MIN, store);
    c.advance(MIN);
    l.check();
    expect(store.get()).toEqual({ last: 1_000_000, locked: true });
    expect(new IdleLock(c.now, () => MIN, store).locked).toBe(true);

    const stale = memory({ last: c.now() - 2 * MIN, locked: false });
    const again = new IdleLock(c.now, () => MIN, stale);
    expect(again.locked).toBe(false);
    expect(again.check()).toBe(true);
  });

  it("does not trust a last activity in the future", () => {
    const c = clock();
    const l = new IdleLock(c.now, () => MIN, memory({ last: c.now() + 100 * MIN, locked: false }));
    c.advance(MIN);
    expect(l.check()).toBe(true);
  });

  it("writes activity to the store at most once a second", () => {
    const c = clock();
    const store = memory();
    let writes = 0;
    const l = new IdleLock(c.now, () => MIN, { load: store.load, save: (s) => (writes++, store.save(s)) });
    for (let i = 0; i < 100; i++) {
      c.advance(10);
      l.touch();
    }
    expect(writes).toBe(1);
    expect(store.get()!.last).toBe(1_000_010);
  });
});
