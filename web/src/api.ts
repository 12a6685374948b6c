// The API client: JSON calls with the access token, one refresh on an expired token,
// errors as ApiError (errors.ts).
//
// Token storage: the access token (15 min) lives in memory only. The refresh token is
// kept in sessionStorage, so a reload of the tab keeps the session but closing the tab
// ends it, and it is never shared with other tabs or written to disk the way
// localStorage is. Each refresh rotates it (the server revokes the session if an old one
// is ever presented again).

import { ApiError, errorFromResponse, networkError } from "./errors";
import type { KeysView } from "./ownerKeys";

export interface User {
  id: string;
  email: string;
  role: string;
  totp_enabled: boolean;
  mobile_pub?: string;
}

export interface TokenResponse {
  access_token: string;
  expires_in: number;
  refresh_token: string;
  session_id: string;
  user: User;
}

export interface Device {
  id: string;
  name: string;
  os: string;
  status: string;
  owner_id?: string;
  online: boolean;
  paired_at?: number;
  /** Admins and auditors: when the PC was last seen (ms), null if never. */
  last_seen?: number | null;
  /** Admins and auditors: the agent's uptime at its last heartbeat, when known. */
  uptime_s?: number | null;
}

export interface CommandView {
  command_id: string;
  device_id: string;
  method: string;
  state: string;
  attempts: number;
  trace_id: string;
  created_at: number;
  expires_at: number;
  result?: Record<string, unknown>;
  error?: number;
}

export interface MetricStat {
  count: number;
  min: number;
  max: number;
  mean: number;
  p95: number;
}

export interface MetricsResponse {
  device_id: string;
  period: string;
  buckets: { bucket_start: number; metrics: Record<string, MetricStat> }[];
}

/** A command waiting for approvals, as `GET /api/approvals` shows it. */
export interface ApprovalCommand extends CommandView {
  params: Record<string, unknown>;
  origin_user_id: string;
  /** The deadline its owner signed (absent: the command is not signed). */
  not_after?: number;
  signed_by?: string;
  approvals_required?: number;
  approvals?: { approver_id: string; at: number; signed_by?: string }[];
  policy_rule?: string;
}

const REFRESH_KEY = "tether.refresh";

/** Why the session changed: `signed-out` when the user signed out, `ended` when it expired or was revoked. */
export type SessionChange = "signed-in" | "signed-out" | "ended";

type Listener = (user: User | null, change: SessionChange) => void;

export class Api {
  private access: string | null = null;
  private user: User | null = null;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<Listener>();

  constructor(private readonly base = "") {}

  get currentUser(): User | null {
    return this.user;
  }

  get accessToken(): string | null {
    return this.access;
  }

  onSession(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private setSession(t: TokenResponse | null, change: SessionChange = t ? "signed-in" : "ended"): void {
    this.access = t?.access_token ?? null;
    this.user = t?.user ?? null;
    try {
      if (t) sessionStorage.setItem(REFRESH_KEY, t.refresh_token);
      else sessionStorage.removeItem(REFRESH_KEY);
    } catch {
      // storage disabled: the session lasts as long as the page
    }
    for (const l of this.listeners) l(this.user, change);
  }

  /** Whether this tab holds a session it could resume (a refresh token). */
  get hasStoredSession(): boolean {
    try {
      return !!sessionStorage.getItem(REFRESH_KEY);
    } catch {
      return false;
    }
  }

  /** Resumes a session from the tab's refresh token, if there is one. */
  async resume(): Promise<boolean> {
    return this.refresh();
  }

  private refresh(): Promise<boolean> {
    this.refreshing ??= (async () => {
      let token: string | null = null;
      try {
        token = sessionStorage.getItem(REFRESH_KEY);
      } catch {
        token = null;
      }
      if (!token) return false;
      try {
        const t = await this.raw<TokenResponse>("POST", "/api/token/refresh", { refresh_token: token }, false);
        this.setSession(t);
        return true;
      } catch (e) {
        if (e instanceof ApiError && e.status !== 0) this.setSession(null);
        return false;
      }
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async register(email: string, password: string, mobilePub?: string): Promise<User> {
    const body: Record<string, string> = { email, password };
    if (mobilePub) body.mobile_pub = mobilePub;
    return this.raw<User>("POST", "/api/register", body, false);
  }

  /** Logs in; throws ApiError 3005 when the account wants a TOTP code. */
  async login(email: string, password: string, totpCode?: string): Promise<User> {
    const body: Record<string, string> = { email, password };
    if (totpCode) body.totp_code = totpCode;
    const t = await this.raw<TokenResponse>("POST", "/api/login", body, false);
    this.setSession(t);
    return t.user;
  }

  async logout(): Promise<void> {
    let token: string | null = null;
    try {
      token = sessionStorage.getItem(REFRESH_KEY);
    } catch {
      token = null;
    }
    this.setSession(null, "signed-out");
    if (token) await this.raw("POST", "/api/logout", { refresh_token: token }, false).catch(() => undefined);
  }

  devices(): Promise<Device[]> {
    return this.call("GET", "/api/devices");
  }

  device(id: string): Promise<Device> {
    return this.call("GET", `/api/devices/${encodeURIComponent(id)}`);
  }

  metrics(id: string, period: "hourly" | "daily" = "hourly"): Promise<MetricsResponse> {
    return this.call("GET", `/api/devices/${encodeURIComponent(id)}/metrics?period=${period}`);
  }

  command(id: string): Promise<CommandView> {
    return this.call("GET", `/api/command/${encodeURIComponent(id)}`);
  }

  submitCommand(body: Record<string, unknown>): Promise<CommandView> {
    return this.call("POST", "/api/command", body);
  }

  /** An authenticated call; refreshes the access token once if it expired. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    if (!this.access && !(await this.refresh())) {
      throw new ApiError(401, 3001, "UNAUTHENTICATED", "Authentication is required.");
    }
    try {
      return await this.raw<T>(method, path, body, true);
    } catch (e) {
      if (e instanceof ApiError && (e.code === 3002 || e.code === 3003) && (await this.refresh())) {
        return this.raw<T>(method, path, body, true);
      }
      if (e instanceof ApiError && e.needsLogin) this.setSession(null);
      throw e;
    }
  }

  /** A GET with the access token answering the raw Response (downloads); errors as ApiError. */
  async getRaw(path: string, accept = "*/*"): Promise<Response> {
    if (!this.access && !(await this.refresh())) {
      throw new ApiError(401, 3001, "UNAUTHENTICATED", "Authentication is required.");
    }
    const go = () => fetch(this.base + path, { headers: { Authorization: `Bearer ${this.access}`, Accept: accept } });
    let r: Response;
    try {
      r = await go();
      if (r.status === 401 && (await this.refresh())) r = await go();
    } catch (e) {
      throw networkError(e);
    }
    if (!r.ok) {
      const e = errorFromResponse(r.status, await r.text());
      if (e.needsLogin) this.setSession(null);
      throw e;
    }
    return r;
  }

  /** A streaming GET with the access token (for `/api/live`). */
  async stream(path: string, signal: AbortSignal): Promise<Response> {
    if (!this.access && !(await this.refresh())) {
      throw new ApiError(401, 3001, "UNAUTHENTICATED", "Authentication is required.");
    }
    const go = () =>
      fetch(this.base + path, {
        headers: { Authorization: `Bearer ${this.access}`, Accept: "text/event-stream" },
        signal,
      });
    let r: Response;
    try {
      r = await go();
      if (r.status === 401 && (await this.refresh())) r = await go();
    } catch (e) {
      throw signal.aborted ? e : networkError(e);
    }
    if (!r.ok) throw errorFromResponse(r.status, await r.text());
    return r;
  }

  private async raw<T>(method: string, path: string, body: unknown, auth: boolean): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && this.access) headers.Authorization = `Bearer ${this.access}`;
    let r: Response;
    try {
      r = await fetch(this.base + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw networkError(e);
    }
    const text = await r.text();
    if (!r.ok) throw errorFromResponse(r.status, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  // --- The owner's phone (issue 7): passkeys, owner keys, TOTP, step-up, approvals ---

  /** `POST /api/passkeys/register/start`: WebAuthn creation options for this account. */
  passkeyRegisterStart(): Promise<{ ceremony_id: string; options: { publicKey: Record<string, unknown> } }> {
    return this.call("POST", "/api/passkeys/register/start");
  }

  passkeyRegisterFinish(ceremonyId: string, credential: Record<string, unknown>): Promise<{ credential_id: string }> {
    return this.call("POST", "/api/passkeys/register/finish", { ceremony_id: ceremonyId, credential });
  }

  /** `POST /api/passkeys/login/start` (no session needed): request options for `email`'s passkeys. */
  passkeyLoginStart(email: string): Promise<{ ceremony_id: string; options: { publicKey: Record<string, unknown> } }> {
    return this.raw("POST", "/api/passkeys/login/start", { email }, false);
  }

  /**
   * `POST /api/passkeys/login/finish`: opens a session. With `replace` (re-authentication
   * of a signed-in user) the session it replaces is ended.
   */
  async passkeyLoginFinish(ceremonyId: string, credential: Record<string, unknown>, replace = false): Promise<User> {
    let old: string | null = null;
    try {
      old = replace ? sessionStorage.getItem(REFRESH_KEY) : null;
    } catch {
      old = null;
    }
    const t = await this.raw<TokenResponse>("POST", "/api/passkeys/login/finish", { ceremony_id: ceremonyId, credential }, false);
    this.setSession(t);
    if (old && old !== t.refresh_token) {
      await this.raw("POST", "/api/logout", { refresh_token: old }, false).catch(() => undefined);
    }
    return t.user;
  }

  /** `GET /api/me/keys`: the keys the account's PCs pin and the statements that made them. */
  ownerKeys(): Promise<KeysView> {
    return this.call("GET", "/api/me/keys");
  }

  /** `POST /api/me/keys`: a signed owner-keys statement. */
  submitOwnerKeys(body: { statement: unknown; user_sig: unknown }): Promise<KeysView> {
    return this.call("POST", "/api/me/keys", body);
  }

  totpEnroll(): Promise<{ secret_base32: string; otpauth_url: string }> {
    return this.call("POST", "/api/totp/enroll");
  }

  async totpConfirm(code: string): Promise<void> {
    await this.call("POST", "/api/totp/confirm", { code });
    await this.reloadUser();
  }

  /** `POST /api/step-up`: a TOTP code as this session's fresh second factor. */
  stepUp(totpCode: string): Promise<{ session_id: string; second_factor_at: number; method: string }> {
    return this.call("POST", "/api/step-up", { totp_code: totpCode });
  }

  /** `GET /api/approvals`: commands waiting for the caller's approval. */
  approvals(): Promise<ApprovalCommand[]> {
    return this.call("GET", "/api/approvals");
  }

  /** `POST /api/command/{id}/approve` with the approver's signature over its statement. */
  approve(id: string, userSig?: unknown): Promise<ApprovalCommand> {
    return this.call("POST", `/api/command/${encodeURIComponent(id)}/approve`, userSig ? { user_sig: userSig } : {});
  }

  /** Reads the account again (`GET /api/me`), e.g. after TOTP was enabled. */
  async reloadUser(): Promise<User> {
    const u = await this.call<User>("GET", "/api/me");
    this.user = u;
    for (const l of this.listeners) l(this.user, "signed-in");
    return u;
  }
}

export const api = new Api();
