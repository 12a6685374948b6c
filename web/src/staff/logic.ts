// The staff dashboard's pure logic: who may do what, audit filters to and from query
// strings, export file names, CSV parsing (the export's preview), policy validation
// messages. No DOM, no fetch: vitest tests it (logic.test.ts).

/** The roles the server knows (crates/store/src/model.rs). */
export type Role = "admin" | "auditor" | "student";

export const ROLES: readonly Role[] = ["admin", "auditor", "student"];

/** What a role may do on the staff dashboard. The server checks each call again. */
export interface Abilities {
  /** Sees the staff dashboard at all (admins and auditors). */
  staff: boolean;
  /** Changes users' roles (`PUT /api/users/{id}/role`). */
  changeRoles: boolean;
  /** Saves the policy (`PUT /api/policy`) and asks for dry runs. */
  editPolicy: boolean;
  /** Approves and revokes devices, changes the approval setting. */
  approveDevices: boolean;
  /** Acknowledges alerts. */
  ackAlerts: boolean;
  /** Reads and exports the audit trail. */
  audit: boolean;
}

export function abilities(role: string | undefined | null): Abilities {
  const admin = role === "admin";
  const staff = admin || role === "auditor";
  return { staff, changeRoles: admin, editPolicy: admin, approveDevices: admin, ackAlerts: admin, audit: staff };
}

/** The dashboard's screens, in the sidebar's order. */
export const SCREENS = [
  { id: "fleet", label: "Fleet health" },
  { id: "timeline", label: "Command timeline" },
  { id: "alerts", label: "Alerts" },
  { id: "approvals", label: "Approvals" },
  { id: "users", label: "Users and roles" },
  { id: "policy", label: "Policy" },
  { id: "audit", label: "Audit log" },
] as const;

export type ScreenId = (typeof SCREENS)[number]["id"];

/** The screen of a `#/staff/<screen>/<arg>` route argument (`fleet` when unknown). */
export function staffScreen(arg: string | undefined): { screen: ScreenId; arg?: string } {
  const [first = "", ...rest] = (arg ?? "").split("/");
  const screen = (SCREENS.find((s) => s.id === first)?.id ?? "fleet") as ScreenId;
  const sub = rest.join("/");
  return sub ? { screen, arg: sub } : { screen };
}

// ---------------------------------------------------------------------------------------
// Audit filters

/** The audit browser's filters (`GET /api/audit` and `/api/audit/export`). */
export interface AuditFilters {
  actor?: string;
  device?: string;
  action?: string;
  outcome?: string;
  /** UnixMillis, inclusive. */
  since?: number;
  /** UnixMillis. */
  until?: number;
}

const TEXT_KEYS = ["actor", "device", "action", "outcome"] as const;
const TIME_KEYS = ["since", "until"] as const;

export const OUTCOMES = ["success", "failure", "denied"] as const;

/** Filters with empty values dropped and text trimmed. */
export function cleanFilters(f: AuditFilters): AuditFilters {
  const out: AuditFilters = {};
  for (const k of TEXT_KEYS) {
    const v = f[k]?.trim();
    if (v) out[k] = v;
  }
  for (const k of TIME_KEYS) {
    const v = f[k];
    if (v !== undefined && Number.isFinite(v) && v >= 0) out[k] = Math.floor(v);
  }
  return out;
}

/** The filters as URL parameters, in a fixed order (the API's and the page's URL). */
export function filterParams(f: AuditFilters): URLSearchParams {
  const c = cleanFilters(f);
  const p = new URLSearchParams();
  for (const k of [...TEXT_KEYS, ...TIME_KEYS]) {
    const v = c[k];
    if (v !== undefined) p.set(k, String(v));
  }
  return p;
}

/** Filters read back from URL parameters; unknown keys and bad numbers are ignored. */
export function filtersFromParams(p: URLSearchParams): AuditFilters {
  const f: AuditFilters = {};
  for (const k of TEXT_KEYS) {
    const v = p.get(k);
    if (v) f[k] = v;
  }
  for (const k of TIME_KEYS) {
    const v = p.get(k);
    if (v && /^\d+$/.test(v)) f[k] = Number(v);
  }
  return cleanFilters(f);
}

/** `GET /api/audit?…` for one page: the filters, then `before` and `limit`. */
export function auditPath(f: AuditFilters, page: { before?: number | null; limit?: number } = {}): string {
  const p = filterParams(f);
  if (page.before !== undefined && page.before !== null) p.set("before", String(page.before));
  if (page.limit !== undefined) p.set("limit", String(page.limit));
  const q = p.toString();
  return "/api/audit" + (q ? "?" + q : "");
}

/** `GET /api/audit/export?format=…&<filters>`. */
export function exportPath(format: "csv" | "json", f: AuditFilters): string {
  const p = new URLSearchParams({ format });
  for (const [k, v] of filterParams(f)) p.set(k, v);
  return "/api/audit/export?" + p.toString();
}

/** Whether the filters are the same (after cleaning). */
export function sameFilters(a: AuditFilters, b: AuditFilters): boolean {
  return filterParams(a).toString() === filterParams(b).toString();
}

/** A `datetime-local` input's value (local time) as UnixMillis; undefined when empty or bad. */
export function localInputToMs(v: string): number | undefined {
  if (!v) return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(v);
  if (!m) return undefined;
  const n = (i: number) => Number(m[i] ?? 0);
  const t = new Date(n(1), n(2) - 1, n(3), n(4), n(5), n(6)).getTime();
  return Number.isFinite(t) ? t : undefined;
}

/** UnixMillis as a `datetime-local` value (local time, to the minute). */
export function msToLocalInput(ms: number | undefined): string {
  if (ms === undefined) return "";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/**
 * Paging through newest-first pages: `stack` holds the `before` cursor of each page seen
 * (null for the first). Older pushes the server's `next_before`; newer pops.
 */
export interface Pager {
  stack: (number | null)[];
}

export const firstPage = (): Pager => ({ stack: [null] });
export const currentCursor = (p: Pager): number | null => p.stack[p.stack.length - 1] ?? null;
export const olderPage = (p: Pager, nextBefore: number): Pager => ({ stack: [...p.stack, nextBefore] });
export const newerPage = (p: Pager): Pager => (p.stack.length > 1 ? { stack: p.stack.slice(0, -1) } : p);
export const pageNumber = (p: Pager): number => p.stack.length;

// ---------------------------------------------------------------------------------------
// Exports

/**
 * The file name of a download from its `Content-Disposition` header (`filename*=UTF-8''…`
 * first, then `filename="…"`), reduced to a safe name; `fallback` when there is none.
 */
export function filenameFromDisposition(header: string | null | undefined, fallback: string): string {
  let name: string | undefined;
  if (header) {
    const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
    if (star?.[1]) {
      try {
        name = decodeURIComponent(star[1].trim());
      } catch {
        name = undefined;
      }
    }
    if (!name) {
      const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/.exec(header);
      name = (plain?.[1]?.replace(/\\(.)/g, "$1") ?? plain?.[2])?.trim();
    }
  }
  const safe = (name ?? "").replace(/[/\\]/g, "_").replace(/[\u0000-\u001f\u007f]/g, "").replace(/^\.+/, "");
  return safe || fallback;
}

/** A default export name: `tether-audit-20250102-1030.csv` (local time). */
export function exportFallbackName(format: "csv" | "json", now: number): string {
  const d = new Date(now);
  const p = (n: number) => String(n).padStart(2, "0");
  return `tether-audit-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}.${format}`;
}

/** Parses CSV (RFC 4180: quoted fields with `""`, commas and line breaks inside quotes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let i = 0;
  const s = text.startsWith("\ufeff") ? text.slice(1) : text;
  while (i < s.length) {
    const c = s[i]!;
    if (quoted) {
      if (c === '"') {
        if (s[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        field += c;
      }
      i++;
      continue;
    }
    if (c === '"' && field === "") {
      quoted = true;
    } else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      if (c === "\r" && s[i + 1] === "\n") i++;
    } else {
      field += c;
    }
    i++;
  }
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** The expected header of a CSV export. */
export const CSV_HEADER = ["seq", "at", "actor", "action", "target", "outcome", "trace_id", "detail"];

/** What a downloaded export holds: the number of events, or a problem with its shape. */
export function summarizeExport(format: "csv" | "json", text: string): { events: number } | { problem: string } {
  if (format === "csv") {
    const rows = parseCsv(text);
    const header = rows[0];
    if (!header || header.join(",") !== CSV_HEADER.join(",")) {
      return { problem: `unexpected CSV header: ${header ? header.join(",").slice(0, 80) : "(empty file)"}` };
    }
    return { events: rows.length - 1 };
  }
  try {
    const v = JSON.parse(text) as { events?: unknown };
    if (!v || !Array.isArray(v.events)) return { problem: "the JSON export has no events array" };
    return { events: v.events.length };
  } catch (e) {
    return { problem: `the JSON export does not parse (${e instanceof Error ? e.message : String(e)})` };
  }
}

// ---------------------------------------------------------------------------------------
// Policy

/**
 * The field path in the server's policy validation message (`policy rules[2].match.
 * methods[0]: unknown variant …`, docs/policy.md) split from the reason.
 */
export function parsePolicyError(message: string): { path?: string; reason: string } {
  const m = /^(?:invalid field\s+)?policy\s+([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_][\w]*)*)\s*:\s*([\s\S]*)$/.exec(message.trim());
  if (m?.[1] && m[2] !== undefined) return { path: m[1], reason: m[2] };
  // Messages that put the path elsewhere: find `rules[N]…` anywhere.
  const any = /\b(rules\[\d+\](?:\[\d+\]|\.[A-Za-z_]\w*)*)\s*:\s*([\s\S]*)$/.exec(message);
  if (any?.[1] && any[2] !== undefined) return { path: any[1], reason: any[2] };
  return { reason: message };
}

/** Checks the editor's text before it goes to the server: JSON, an object, format 1. */
export function checkPolicyText(
  text: string,
): { ok: true; bundle: Record<string, unknown> } | { ok: false; message: string; line?: number; column?: number } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const lc = /line (\d+) column (\d+)/.exec(msg);
    if (lc?.[1] && lc[2]) return { ok: false, message: `Not valid JSON: ${msg}`, line: Number(lc[1]), column: Number(lc[2]) };
    const pos = /position (\d+)/.exec(msg);
    if (pos?.[1]) {
      const at = Number(pos[1]);
      const before = text.slice(0, at).split("\n");
      return { ok: false, message: `Not valid JSON: ${msg}`, line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
    }
    return { ok: false, message: `Not valid JSON: ${msg}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { ok: false, message: "A policy bundle is a JSON object ({\"format\": 1, …})." };
  }
  const o = v as Record<string, unknown>;
  if (o.format !== 1) return { ok: false, message: 'format: must be 1 ("format": 1).' };
  if (o.rules !== undefined && !Array.isArray(o.rules)) return { ok: false, message: "rules: must be an array." };
  if (o.default !== undefined && o.default !== "allow" && o.default !== "deny") {
    return { ok: false, message: 'default: must be "allow" or "deny".' };
  }
  return { ok: true, bundle: o };
}

/** The methods a command may name (docs/protocol.md 7.1). */
export const METHODS = [
  "lock_screen",
  "logoff",
  "reboot",
  "shutdown",
  "screenshot",
  "collect_logs",
  "run_attestation",
  "run_tamper_check",
  "memory_dump",
] as const;

// ---------------------------------------------------------------------------------------
// Formatting

/** 93784 → "1 d 2 h", 7260 → "2 h 1 min", 59 → "59 s". */
export function formatUptime(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return "–";
  const t = Math.floor(s);
  const d = Math.floor(t / 86400);
  const h = Math.floor((t % 86400) / 3600);
  const m = Math.floor((t % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min`;
  return `${t} s`;
}

/** A timestamp for tables: `2025-01-02 10:30:05` (local time). */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A JSON value on one line, cut to `max` characters. */
export function compactJson(v: unknown, max = 160): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? "";
  } catch {
    s = String(v);
  }
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}
