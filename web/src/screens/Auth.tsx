// Register and log in.

import { useState } from "preact/hooks";
import { api } from "../api";
import { ApiError } from "../errors";
import { createOwnerKey, deleteOwnerKey } from "../ownerKey";
import { navigate } from "../router";
import { loginWithPasskey, PasskeyError, passkeysSupported } from "../passkeys";
import { ErrorBox } from "../ui";

export function Login({ next, notice }: { next: string; notice?: string }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [totp, setTotp] = useState("");
  const [needTotp, setNeedTotp] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  // A passkey registered for this email (the server's passkey login names the account by
  // email). It is a second factor by itself: no TOTP code follows.
  const withPasskey = async () => {
    if (!email.trim()) {
      setError(
        new PasskeyError(
          "Enter your email first: it names the account whose passkey to use.",
          "Email needed",
          "Type your email, then press the passkey button again.",
        ),
      );
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await loginWithPasskey(email.trim());
      navigate(next);
    } catch (err) {
      setError(
        err instanceof ApiError && err.code === 3008
          ? new PasskeyError(
              "There is no passkey for this email.",
              "No passkey",
              "Sign in with your password, then add a passkey under Security.",
            )
          : err,
      );
    } finally {
      setBusy(false);
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(email.trim(), password, needTotp ? totp.trim() : undefined);
      navigate(next);
    } catch (err) {
      if (err instanceof ApiError && err.code === 3005) {
        // The password was right; the server asks for the second factor.
        setNeedTotp(true);
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="narrow">
      <h1 class="brand">Tether</h1>
      <form onSubmit={submit} class="card">
        <h2>Sign in</h2>
        {notice && <p class="notice">{notice}</p>}
        <label>
          Email
          <input type="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {needTotp && (
          <label>
            Authenticator code
            <input
              inputMode="numeric"
              autocomplete="one-time-code"
              pattern="[0-9 ]{6,7}"
              required
              autoFocus
              value={totp}
              onInput={(e) => setTotp(e.currentTarget.value)}
            />
            <small>Enter the 6-digit code from your authenticator app.</small>
          </label>
        )}
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {passkeysSupported() && (
          <button type="button" class="full passkey-login" onClick={() => void withPasskey()} disabled={busy}>
            Use a passkey instead
          </button>
        )}
        <p>
          New here? <a href="#/register">Create an account</a>
        </p>
      </form>
    </main>
  );
}

export function Register() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    let key: Awaited<ReturnType<typeof createOwnerKey>> | null = null;
    let registered = false;
    try {
      try {
        key = await createOwnerKey();
      } catch {
        throw new Error(
          "This browser cannot create an Ed25519 signing key (WebCrypto Ed25519 and IndexedDB are needed). Use a current Chrome, Edge, Firefox or Safari.",
        );
      }
      await api.register(email.trim(), password, key.publicKey);
      registered = true;
      await api.login(email.trim(), password);
      navigate("/devices");
    } catch (err) {
      // A key no account names is useless: drop it.
      if (key && !registered) await deleteOwnerKey(key.publicKey).catch(() => undefined);
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="narrow">
      <h1 class="brand">Tether</h1>
      <form onSubmit={submit} class="card">
        <h2>Create an account</h2>
        <label>
          Email
          <input type="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input
            type="password"
            autocomplete="new-password"
            required
            minLength={10}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <small>At least 10 characters.</small>
        </label>
        <p class="small">
          This browser creates your signing key; your PCs run only commands it signs. It stays in this browser and
          cannot be copied out.
        </p>
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Creating…" : "Create account"}
        </button>
        <p>
          Have an account? <a href="#/login">Sign in</a>
        </p>
      </form>
    </main>
  );
}
