// The app lock's idle timer, pure (the clock and storage are injected; lock.test.ts drives
// it with a fake clock). screens/AppLock.tsx wires it to the page: activity events call
// `touch`, a 1 s tick and the tab becoming visible again call `check`.
//
// Idle means no pointer, key, wheel or scroll event for `idleMs`. A hidden tab gets no
// events, so a tab that comes back after being hidden that long is due at once. The last
// activity and the locked state are kept in sessionStorage, so a reload of a locked (or
// long idle) tab is locked too.

/** localStorage: lock after this many idle seconds; 0 never. */
export const IDLE_SETTING = "tether.lock.idle_s";
export const DEFAULT_IDLE_S = 300;
/** sessionStorage: `{last, locked}`. */
export const STATE_KEY = "tether.lock.state";

/** The idle time in ms from the setting's text (default 5 min; 0: never; at least 1 s). */
export function idleMsFrom(setting: string | null): number {
  if (setting === null || setting.trim() === "") return DEFAULT_IDLE_S * 1000;
  const s = Number(setting);
  if (!Number.isFinite(s) || s < 0) return DEFAULT_IDLE_S * 1000;
  if (s === 0) return 0;
  return Math.max(1, Math.min(s, 24 * 3600)) * 1000;
}

export interface LockState {
  last: number;
  locked: boolean;
}

export interface LockStore {
  load(): LockState | null;
  save(s: LockState): void;
}

/** How often activity is written to the store (each event would be a write otherwise). */
const SAVE_EVERY_MS = 1000;

export class IdleLock {
  private last: number;
  private lockedNow: boolean;
  private saved = 0;

  constructor(
    private readonly now: () => number,
    /** Read on every check, so a changed setting applies at once. */
    private readonly idleMs: () => number,
    private readonly store: LockStore | null = null,
  ) {
    const s = store?.load() ?? null;
    const t = now();
    this.last = s && Number.isFinite(s.last) && s.last <= t ? s.last : t;
    this.lockedNow = s?.locked === true;
  }

  get locked(): boolean {
    return this.lockedNow;
  }

  /** Activity: the idle time starts again (not while locked: only unlocking unlocks). */
  touch(): void {
    if (this.lockedNow) return;
    this.last = this.now();
    if (this.last - this.saved >= SAVE_EVERY_MS) this.persist();
  }

  /** Locks when idle for long enough; answers whether it is locked. */
  check(): boolean {
    const idle = this.idleMs();
    if (!this.lockedNow && idle > 0 && this.now() - this.last >= idle) this.lock();
    return this.lockedNow;
  }

  /** Time until it is due (Infinity when the lock is off). */
  remaining(): number {
    const idle = this.idleMs();
    if (idle <= 0) return Infinity;
    return Math.max(0, this.last + idle - this.now());
  }

  lock(): void {
    this.lockedNow = true;
    this.persist();
  }

  /** After the user proved it is them: unlocked, and the idle time starts again. */
  unlock(): void {
    this.lockedNow = false;
    this.last = this.now();
    this.persist();
  }

  private persist() {
    this.saved = this.now();
    this.store?.save({ last: this.last, locked: this.lockedNow });
  }
}
