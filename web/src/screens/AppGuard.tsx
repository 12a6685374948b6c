// Mounted next to the app while someone is signed in: the app lock (after idle time, for
// accounts with a passkey) and the step-up prompt (a fresh second factor for sensitive
// commands, commands.ts `submit`).
//
// The lock is a modal <dialog> over everything (opaque backdrop; the page under it is
// inert while it is open). Unlocking re-authenticates with the passkey through the
// server's own passkey login ceremony: the server issues the challenge and verifies the
// assertion (user verification required), opens a fresh session and the old one is
// ended. Only when the server cannot be reached (offline), or has no login passkey for
// the account, does the app check locally: an assertion over a random challenge, with
// UV, by a passkey pinned on the PCs, verified with its public key here. Why the server
// first: the assertion is verified by the server, not by the page it protects, the
// unlock is audited, and the new session carries a fresh second factor (step-up). Either way the lock gates this UI only: the
// session's tokens stay in this tab's memory and storage while locked (docs/security.md,
// "The app lock").

import { useEffect, useRef, useState } from "preact/hooks";
import { api, type User } from "../api";
import { setStepUpHandler } from "../commands";
import type { ApiError } from "../errors";
import { IDLE_SETTING, IdleLock, STATE_KEY, idleMsFrom, type LockState } from "../lock";
import { onKeysChange, pinnedPasskeys, reauthenticate, refreshKeys } from "../passkeys";
import { ErrorBox } from "../ui";
import { LockIcon } from "./ownerIcons";
import "./owner.css";

/** Activity that restarts the idle time. */
const ACTIVITY = ["pointerdown", "keydown", "wheel", "touchstart", "scroll"] as const;

const sessionStore = {
  load(): LockState | null {
    try {
      return JSON.parse(sessionStorage.getItem(STATE_KEY) ?? "null") as LockState | null;
    } catch {
      return null;
    }
  },
  save(s: LockState) {
    try {
      sessionStorage.setItem(STATE_KEY, JSON.stringify(s));
    } catch {
      // storage disabled: the lock state lasts as long as the page
    }
  },
};

function idleMs(): number {
  try {
    return idleMsFrom(localStorage.getItem(IDLE_SETTING));
  } catch {
    return idleMsFrom(null);
  }
}

export function AppGuard() {
  const [user, setUser] = useState<User | null>(api.currentUser);
  useEffect(() => {
    const off = api.onSession((u) => {
      // Signed out (or the session ended): a new sign-in starts unlocked.
      if (!u) sessionStorage.removeItem(STATE_KEY);
      setUser(u);
    });
    return () => void off();
  }, []);
  if (!user) return null;
  return (
    <>
      <Lock key={user.id} user={user} />
      <StepUpPrompt user={user} />
    </>
  );
}

function Lock({ user }: { user: User }) {
  const [hasPasskey, setHasPasskey] = useState(() => pinnedPasskeys(user.id).length > 0);
  const lock = useRef<IdleLock | null>(null);
  lock.current ??= new IdleLock(() => Date.now(), idleMs, sessionStore);
  const [locked, setLocked] = useState(false);

  // Whether the account has a passkey: the cached keys at once, the server's answer next.
  useEffect(() => {
    const update = () => setHasPasskey(pinnedPasskeys(user.id).length > 0);
    const off = onKeysChange(update);
    refreshKeys().then(update, () => undefined);
    return () => void off();
  }, [user.id]);

  // Activity always counts (so enrolling a passkey does not find the app idle since load).
  useEffect(() => {
    const l = lock.current!;
    const touch = () => l.touch();
    for (const ev of ACTIVITY) addEventListener(ev, touch, { capture: true, passive: true });
    return () => {
      for (const ev of ACTIVITY) removeEventListener(ev, touch, { capture: true });
    };
  }, []);

  useEffect(() => {
    if (!hasPasskey) {
      setLocked(false);
      return;
    }
    const l = lock.current!;
    const tick = () => setLocked(l.check());
    const visible = () => document.visibilityState === "visible" && tick();
    document.addEventListener("visibilitychange", visible);
    const timer = setInterval(tick, 1000);
    tick();
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", visible);
    };
  }, [hasPasskey]);

  if (!locked) return null;
  return (
    <LockDialog
      user={user}
      onUnlocked={() => {
        lock.current!.unlock();
        setLocked(false);
      }}
    />
  );
}

function LockDialog({ user, onUnlocked }: { user: User; onUnlocked: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);

  const unlock = async () => {
    setBusy(true);
    setError(null);
    try {
      await reauthenticate(true);
      onUnlocked();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <dialog
      ref={ref}
      class="app-lock"
      aria-labelledby="app-lock-title"
      onCancel={(e) => e.preventDefault() /* Escape does not unlock */}
    >
      <div class="app-lock-body">
        <div class="app-lock-icon">
          <LockIcon size={56} />
        </div>
        <h2 id="app-lock-title">Tether is locked</h2>
        <p class="muted">
          Signed in as {user.email}. Confirm it is you with your passkey to go on.
        </p>
        <ErrorBox error={error} />
        <button type="button" class="primary big" onClick={() => void unlock()} disabled={busy}>
          {busy ? "Waiting for your passkey…" : "Unlock with passkey"}
        </button>
        <button type="button" class="link full" onClick={() => void api.logout()}>
          Sign out
        </button>
      </div>
    </dialog>
  );
}

/** Asks for a fresh second factor when a sensitive command needs one (4003). */
function StepUpPrompt({ user }: { user: User }) {
  const [ask, setAsk] = useState<{ error: ApiError; done: (ok: boolean) => void } | null>(null);
  const pending = useRef<Promise<boolean> | null>(null);

  useEffect(() => {
    setStepUpHandler((error) => {
      // Two commands wanting it at once share one prompt.
      pending.current ??= new Promise<boolean>((resolve) =>
        setAsk({
          error,
          done: (ok) => {
            pending.current = null;
            setAsk(null);
            resolve(ok);
          },
        }),
      );
      return pending.current;
    });
    return () => setStepUpHandler(null);
  }, []);

  if (!ask) return null;
  return <StepUpDialog user={user} reason={ask.error.message} done={ask.done} />;
}

function StepUpDialog({ user, reason, done }: { user: User; reason: string; done: (ok: boolean) => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const passkey = pinnedPasskeys(user.id).length > 0;
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);

  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      done(true);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <dialog ref={ref} class="step-up" aria-labelledby="step-up-title" onCancel={() => done(false)}>
      <h2 id="step-up-title">Confirm it is you</h2>
      <p>This command needs a fresh second factor. {reason}</p>
      {user.totp_enabled && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void run(() => api.stepUp(code.replace(/\s/g, "")));
          }}
        >
          <label>
            Authenticator code
            <input
              inputMode="numeric"
              autocomplete="one-time-code"
              pattern="[0-9 ]{6,7}"
              required
              autoFocus
              value={code}
              onInput={(e) => setCode(e.currentTarget.value)}
            />
          </label>
          <button type="submit" class="primary" disabled={busy}>
            Confirm and send
          </button>
        </form>
      )}
      {passkey && (
        <button type="button" class={user.totp_enabled ? "link full" : "primary"} disabled={busy} onClick={() => void run(() => reauthenticate(false))}>
          {user.totp_enabled ? "Use my passkey instead" : "Confirm with my passkey"}
        </button>
      )}
      {!user.totp_enabled && !passkey && (
        <p class="hint">
          Your account has no second factor yet: set up an authenticator app or a passkey under{" "}
          <a href="#/security" onClick={() => done(false)}>
            Security
          </a>
          .
        </p>
      )}
      <ErrorBox error={error} />
      <button type="button" class="link full" onClick={() => done(false)} disabled={busy}>
        Cancel
      </button>
    </dialog>
  );
}
