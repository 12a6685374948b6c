// Security: the owner's passkeys (add one: registered with the server and pinned on every
// PC), what signs commands, the app lock's idle time, and the authenticator app (TOTP).

import { useEffect, useState } from "preact/hooks";
import { api, type User } from "../api";
import { IDLE_SETTING, idleMsFrom } from "../lock";
import { findOwnerKey } from "../ownerKey";
import type { KeysView } from "../ownerKeys";
import {
  cachedKeys,
  enrolPasskey,
  localPasskeys,
  onKeysChange,
  passkeysSupported,
  pinPasskey,
  pinnedPasskeys,
  preferredSigner,
  refreshKeys,
  SIGNER_KEY,
  type LocalPasskey,
} from "../passkeys";
import { ErrorBox, TopBar } from "../ui";
import { KeyIcon } from "./ownerIcons";
import "./owner.css";

const short = (kid: string) => (kid.length > 16 ? `${kid.slice(0, 8)}…${kid.slice(-6)}` : kid);
const when = (ms: number) => new Date(ms).toLocaleString();

export function Security() {
  const user = api.currentUser;
  const [view, setView] = useState<KeysView | null>(() => cachedKeys());
  const [local, setLocal] = useState<LocalPasskey[]>(() => localPasskeys());
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [hasBrowserKey, setHasBrowserKey] = useState(false);

  useEffect(() => {
    const sync = () => {
      setView(cachedKeys());
      setLocal(localPasskeys());
    };
    const off = onKeysChange(sync);
    refreshKeys().then(sync, setError);
    if (user?.mobile_pub) findOwnerKey(user.mobile_pub).then((k) => setHasBrowserKey(!!k), () => undefined);
    return () => void off();
  }, []);

  if (!user) return null;
  const passkeys = pinnedPasskeys(user.id);
  const mine = new Set(local.map((p) => p.id));
  const unpinned = local.filter((p) => !passkeys.some((k) => k.kid === p.id));
  const pinnedAt = (kid: string) =>
    view?.statements.find((s) => s.added.some((a) => a.startsWith(kid + ":")))?.created_at ?? null;

  const add = async () => {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const { pinError } = await enrolPasskey();
      if (pinError) {
        setError(pinError);
        setNotice("The passkey signs you in, but it is not pinned on your PCs yet, so it cannot sign commands. Pin it below.");
      } else {
        const n = cachedKeys()?.pushed_to ?? 0;
        const now = n === 0 ? "" : n === 1 ? " The PC that is online has it now." : ` The ${n} PCs that are online have it now.`;
        setNotice(
          `Passkey added and pinned on your PCs.${now} Others get it when they connect, and PCs you pair from now on pin it at pairing. Commands are now signed with it.`,
        );
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const pin = async (p: LocalPasskey) => {
    setBusy(true);
    setError(null);
    try {
      await pinPasskey(p);
      setNotice("Passkey pinned on your PCs.");
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <TopBar title="Security" back="#/devices" />
      <main class="security">
        <section class="card" aria-labelledby="passkeys-title">
          <h2 id="passkeys-title">Passkeys</h2>
          <p class="small muted">
            A passkey signs in without a password and signs your commands: your PCs run a command only if a key they
            pin signed it. Adding one pins it on every PC with a statement signed by this browser's key.
          </p>
          {notice && (
            <p class="notice" role="status">
              {notice}
            </p>
          )}
          <ErrorBox error={error} />
          {passkeys.length === 0 && unpinned.length === 0 && <p>No passkey yet.</p>}
          <ul class="keys" aria-label="Passkeys pinned on your PCs">
            {passkeys.map((k) => {
              const at = pinnedAt(k.kid);
              return (
                <li key={k.kid} class="passkey">
                  <span class="key-icon">
                    <KeyIcon />
                  </span>
                  <span class="grow">
                    <strong>Passkey {short(k.kid)}</strong>
                    <small>
                      pinned on your PCs{at ? ` since ${when(at)}` : ""}
                      {mine.has(k.kid) ? " · made in this browser" : ""}
                    </small>
                  </span>
                </li>
              );
            })}
            {unpinned.map((p) => (
              <li key={p.id} class="passkey unpinned">
                <span class="key-icon">
                  <KeyIcon />
                </span>
                <span class="grow">
                  <strong>Passkey {short(p.id)}</strong>
                  <small>signs in; not pinned on your PCs yet</small>
                </span>
                <button type="button" onClick={() => void pin(p)} disabled={busy}>
                  Pin on my PCs
                </button>
              </li>
            ))}
          </ul>
          {passkeysSupported() ? (
            <button type="button" class="primary" onClick={() => void add()} disabled={busy}>
              {busy ? "Follow your browser's prompt…" : "Add a passkey"}
            </button>
          ) : (
            <p class="hint">This browser cannot use passkeys (WebAuthn).</p>
          )}
        </section>

        {passkeys.length > 0 && hasBrowserKey && <SignerChoice />}
        <LockSetting hasPasskey={passkeys.length > 0} />
        <Totp user={user} />

        {view && (
          <section class="card" aria-labelledby="keys-title">
            <h2 id="keys-title">Keys your PCs pin</h2>
            <ul class="keys compact">
              {view.keys.map((k) => (
                <li key={k.kid}>
                  <code>{short(k.kid)}</code> {k.kind === "ed25519" ? "browser / CLI key" : "passkey"}
                  {k.role === "approver" ? " · approver" : ""}
                  {k.kind === "ed25519" && k.public_key === user.mobile_pub ? " · your registration key" : ""}
                </li>
              ))}
            </ul>
            <p class="small muted">
              {view.statements.length} change{view.statements.length === 1 ? "" : "s"} since you registered (version{" "}
              {view.version}).
            </p>
          </section>
        )}
      </main>
    </>
  );
}

function SignerChoice() {
  const [signer, setSigner] = useState(preferredSigner());
  const choose = (v: "passkey" | "browser-key") => {
    localStorage.setItem(SIGNER_KEY, v);
    setSigner(v);
  };
  return (
    <section class="card" aria-labelledby="signer-title">
      <h2 id="signer-title">Sign commands with</h2>
      <div class="seg" role="group" aria-labelledby="signer-title">
        <button type="button" aria-pressed={signer === "passkey"} onClick={() => choose("passkey")}>
          Passkey
        </button>
        <button type="button" aria-pressed={signer === "browser-key"} onClick={() => choose("browser-key")}>
          This browser's key
        </button>
      </div>
      <p class="small muted">
        The passkey asks for your PIN or biometric on every command; this browser's key signs without asking.
      </p>
    </section>
  );
}

const LOCK_CHOICES: [string, string][] = [
  ["60", "1 min"],
  ["300", "5 min"],
  ["900", "15 min"],
  ["3600", "1 hour"],
  ["0", "Never"],
];

function LockSetting({ hasPasskey }: { hasPasskey: boolean }) {
  const [value, setValue] = useState(() => String(idleMsFrom(localStorage.getItem(IDLE_SETTING)) / 1000));
  const choose = (v: string) => {
    localStorage.setItem(IDLE_SETTING, v);
    setValue(v);
  };
  const known = LOCK_CHOICES.some(([v]) => v === value);
  return (
    <section class="card" aria-labelledby="lock-title">
      <h2 id="lock-title">App lock</h2>
      <label>
        Lock after
        <select value={value} onChange={(e) => choose(e.currentTarget.value)}>
          {!known && <option value={value}>{value} s</option>}
          {LOCK_CHOICES.map(([v, l]) => (
            <option key={v} value={v}>
              {l}
            </option>
          ))}
        </select>
        <small>
          {hasPasskey
            ? "Without use (or hidden) this long, the app covers itself and asks for your passkey."
            : "The lock works once you have a passkey."}
        </small>
      </label>
    </section>
  );
}

function Totp({ user }: { user: User }) {
  const [enrol, setEnrol] = useState<{ secret_base32: string; otpauth_url: string } | null>(null);
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      setEnrol(await api.totpEnroll());
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const confirm = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.totpConfirm(code.replace(/\s/g, ""));
      setEnrol(null);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="totp-title">
      <h2 id="totp-title">Authenticator app</h2>
      {user.totp_enabled ? (
        <p>On: signing in with a password asks for a 6-digit code, and it confirms sensitive commands.</p>
      ) : enrol ? (
        <form onSubmit={confirm}>
          <p>
            Add this account to your authenticator app: open the link on this phone, or type the key.
          </p>
          <p>
            <a href={enrol.otpauth_url}>Open in authenticator app</a>
          </p>
          <p class="secret">
            <code>{enrol.secret_base32.replace(/(.{4})/g, "$1 ").trim()}</code>
          </p>
          <label>
            Code from the app
            <input
              inputMode="numeric"
              autocomplete="one-time-code"
              pattern="[0-9 ]{6,7}"
              required
              value={code}
              onInput={(e) => setCode(e.currentTarget.value)}
            />
          </label>
          <ErrorBox error={error} />
          <button type="submit" class="primary" disabled={busy}>
            Turn on
          </button>
        </form>
      ) : (
        <>
          <p class="small muted">Off. A code from an authenticator app as a second factor at sign-in and for sensitive commands.</p>
          <ErrorBox error={error} />
          <button type="button" onClick={() => void start()} disabled={busy}>
            Set up
          </button>
        </>
      )}
    </section>
  );
}
